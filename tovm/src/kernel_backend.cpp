#include "tosec/tovm/kernel_backend.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

namespace tosec::tovm {

namespace {
rpc::Error sys_error(const char* what) { return rpc::errno_error(what); }
}  // namespace

rpc::Result<std::unique_ptr<KernelBackend>> KernelBackend::create() {
  std::unique_ptr<KernelBackend> b(new KernelBackend());
  b->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!b->epoll_.valid()) return sys_error("epoll_create1");
  return b;
}

KernelBackend::~KernelBackend() {
  for (auto& [fd, reg] : registered_) ::close(fd);
}

rpc::Result<BackendHandle> KernelBackend::open(int domain, int type, int protocol) {
  if (domain != AF_INET && domain != AF_INET6) {
    return rpc::Error{EAFNOSUPPORT, "kernel backend: domain " + std::to_string(domain)};
  }
  if (type != SOCK_STREAM && type != SOCK_DGRAM) {
    return rpc::Error{ESOCKTNOSUPPORT, "kernel backend: type " + std::to_string(type)};
  }
  const int fd = ::socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return sys_error("socket");
  registered_[fd] = Reg{};
  return fd;
}

void KernelBackend::close(BackendHandle h, bool abort) {
  auto it = registered_.find(h);
  if (it == registered_.end()) return;
  if (abort) {
    linger l{1, 0};
    (void)::setsockopt(h, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  // No EPOLL_CTL_DEL: closing the last descriptor of a file takes it out of every epoll set,
  // and this fd is the only one (we never dup it, and it is close-on-exec).
  registered_.erase(it);
  ::close(h);
}

rpc::Status KernelBackend::bind(BackendHandle h, const SockAddr& a) {
  if (::bind(h, a.get(), a.length) != 0) return sys_error("bind");
  return {};
}

rpc::Status KernelBackend::listen(BackendHandle h, int backlog) {
  if (::listen(h, backlog) != 0) return sys_error("listen");
  return {};
}

rpc::Result<BackendHandle> KernelBackend::accept(BackendHandle h, SockAddr& peer) {
  peer.length = sizeof peer.storage;
  const int fd = ::accept4(h, peer.get(), &peer.length, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return sys_error("accept");
  registered_[fd] = Reg{};
  return fd;
}

rpc::Status KernelBackend::connect(BackendHandle h, const SockAddr& a) {
  if (::connect(h, a.get(), a.length) != 0) return sys_error("connect");
  return {};
}

rpc::Status KernelBackend::shutdown(BackendHandle h, int how) {
  if (::shutdown(h, how) != 0) return sys_error("shutdown");
  return {};
}

rpc::Status KernelBackend::setsockopt(BackendHandle h, int level, int name,
                                      std::span<const std::byte> value) {
  if (::setsockopt(h, level, name, value.data(), static_cast<socklen_t>(value.size())) != 0) {
    return sys_error("setsockopt");
  }
  return {};
}

rpc::Result<std::size_t> KernelBackend::getsockopt(BackendHandle h, int level, int name,
                                                   std::span<std::byte> out) {
  auto len = static_cast<socklen_t>(out.size());
  if (::getsockopt(h, level, name, out.data(), &len) != 0) return sys_error("getsockopt");
  return std::size_t{len};
}

rpc::Result<SockAddr> KernelBackend::local_address(BackendHandle h) {
  SockAddr a;
  a.length = sizeof a.storage;
  if (::getsockname(h, a.get(), &a.length) != 0) return sys_error("getsockname");
  return a;
}

rpc::Result<SockAddr> KernelBackend::peer_address(BackendHandle h) {
  SockAddr a;
  a.length = sizeof a.storage;
  if (::getpeername(h, a.get(), &a.length) != 0) return sys_error("getpeername");
  return a;
}

int KernelBackend::take_error(BackendHandle h) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(h, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

rpc::Result<std::size_t> KernelBackend::send(BackendHandle h, std::span<const std::byte> data,
                                             int flags, const SockAddr* to) {
  const ssize_t n = to != nullptr ? ::sendto(h, data.data(), data.size(), flags | MSG_NOSIGNAL,
                                             to->get(), to->length)
                                  : ::send(h, data.data(), data.size(), flags | MSG_NOSIGNAL);
  if (n < 0) return rpc::Error{errno, {}};  // hot path: EAGAIN is common, no message
  return static_cast<std::size_t>(n);
}

bool KernelBackend::has_unread(BackendHandle h) {
  int n = 0;
  return ::ioctl(h, FIONREAD, &n) == 0 && n > 0;
}

rpc::Result<std::size_t> KernelBackend::recv(BackendHandle h, std::span<std::byte> out,
                                             SockAddr* from) {
  ssize_t n;
  if (from != nullptr) {
    from->length = sizeof from->storage;
    n = ::recvfrom(h, out.data(), out.size(), 0, from->get(), &from->length);
  } else {
    n = ::recv(h, out.data(), out.size(), 0);
  }
  if (n < 0) return rpc::Error{errno, {}};
  return static_cast<std::size_t>(n);
}

rpc::Status KernelBackend::set_interest(BackendHandle h, std::uint64_t token, Interest interest) {
  auto it = registered_.find(h);
  if (it == registered_.end()) return rpc::Error{EBADF, "kernel backend: unknown handle"};
  std::uint32_t ev = 0;
  if (interest.read) ev |= EPOLLIN | EPOLLRDHUP;
  if (interest.write) ev |= EPOLLOUT;
  // EPOLLERR/EPOLLHUP are always reported; ONESHOT makes a level-triggered HUP wake us once.
  if (ev == 0 && interest.error) ev = EPOLLONESHOT;
  Reg& r = it->second;
  if (ev == r.events && (token == r.token || ev == 0)) {
    r.token = token;
    return {};
  }
  epoll_event e{};
  e.events = ev;
  e.data.u64 = token;
  int rc;
  if (ev == 0) {
    rc = ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, h, nullptr);
  } else {
    rc = ::epoll_ctl(epoll_.get(), r.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, h, &e);
  }
  if (rc != 0) return sys_error("epoll_ctl");
  r.events = ev;
  r.token = token;
  return {};
}

std::size_t KernelBackend::poll(std::span<BackendEvent> out) {
  epoll_event evs[64];
  const int max = static_cast<int>(std::min<std::size_t>(out.size(), 64));
  const int n = ::epoll_wait(epoll_.get(), evs, max, 0);
  if (n <= 0) return 0;
  for (int i = 0; i < n; ++i) {
    const epoll_event& e = evs[i];
    BackendEvent& o = out[static_cast<std::size_t>(i)];
    o.token = e.data.u64;
    o.readable = (e.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    o.writable = (e.events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0;
    o.error = (e.events & EPOLLERR) != 0;
    o.hangup = (e.events & EPOLLHUP) != 0;
  }
  return static_cast<std::size_t>(n);
}

}  // namespace tosec::tovm
