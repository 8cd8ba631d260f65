#include "ivshmem_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/ivshmem_protocol.h"

namespace tosec::host {

using rpc::errno_error;
using rpc::Error;
using rpc::Result;
using rpc::Status;
using rpc::UniqueFd;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// After accept() fails for lack of fds the listening socket stays readable; pausing accepts
// keeps the loop from spinning while existing peers go on being served.
constexpr std::int64_t kAcceptBackoffMs = 100;
constexpr int kListenBacklog = 64;

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Error{ENAMETOOLONG, "socket path '" + path + "' is empty or longer than " +
                                   std::to_string(sizeof addr.sun_path - 1) + " bytes"};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

const sockaddr* as_sockaddr(const sockaddr_un& a) { return reinterpret_cast<const sockaddr*>(&a); }

// A socket file at `path` may be left over from a server that crashed. Remove it if nobody
// answers there; refuse to touch a live server's socket or a file that is not a socket.
Status clear_stale_socket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return {};
    return errno_error("stat(" + path + ")");
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Error{EEXIST, path + " exists and is not a socket; refusing to replace it"};
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return errno_error("socket");
  if (::connect(probe.get(), as_sockaddr(addr), sizeof addr) == 0) {
    return Error{EADDRINUSE, "another server is already listening on " + path};
  }
  if (errno != ECONNREFUSED) return errno_error("probing existing socket " + path);
  if (::unlink(path.c_str()) < 0 && errno != ENOENT) {
    return errno_error("removing stale socket " + path);
  }
  return {};
}

}  // namespace

IvshmemServer::IvshmemServer(IvshmemServerConfig config, UniqueFd shm_fd)
    : config_(std::move(config)),
      shm_(std::make_shared<const UniqueFd>(std::move(shm_fd))),
      ids_(config_.id_policy) {}

Result<std::unique_ptr<IvshmemServer>> IvshmemServer::start(IvshmemServerConfig config,
                                                            UniqueFd shm_fd) {
  if (config.vectors > kMaxIvshmemVectors) {
    return Error{EINVAL, "too many vectors: " + std::to_string(config.vectors) + " (max " +
                             std::to_string(kMaxIvshmemVectors) + ")"};
  }
  if (!shm_fd.valid()) return Error{EBADF, "no shared memory fd"};
  std::unique_ptr<IvshmemServer> s(new IvshmemServer(std::move(config), std::move(shm_fd)));
  auto wake = rpc::make_eventfd();
  if (!wake) return wake.error();
  s->wake_ = std::move(*wake);
  if (auto st = s->listen(); !st) return st.error();
  return s;
}

Status IvshmemServer::listen() {
  const std::string& path = config_.socket_path;
  auto addr = unix_address(path);
  if (!addr) return addr.error();
  if (auto s = clear_stale_socket(path, *addr); !s) return s;
  listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_.valid()) return errno_error("socket");
  // Bind under a temporary name and rename it into place once listening: the path then
  // appears only when a connect can succeed (a client that waits for the file, as QEMU's
  // users and our CLI do, would otherwise be refused between bind() and listen()). A path
  // too long for the suffix is bound directly.
  const std::string tmp = path + ".new." + std::to_string(::getpid());
  auto tmp_addr = unix_address(tmp);
  const std::string& bound = tmp_addr ? tmp : path;
  ::unlink(tmp.c_str());
  if (::bind(listen_.get(), as_sockaddr(tmp_addr ? *tmp_addr : *addr), sizeof *addr) < 0) {
    return errno_error("bind(" + bound + ")");
  }
  if (::listen(listen_.get(), kListenBacklog) < 0) {
    if (tmp_addr) ::unlink(tmp.c_str());
    return errno_error("listen(" + path + ")");
  }
  if (tmp_addr && ::rename(tmp.c_str(), path.c_str()) < 0) {
    const auto e = errno_error("rename(" + tmp + ", " + path + ")");
    ::unlink(tmp.c_str());
    return e;
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) socket_ino_ = st.st_ino;
  log("listening on " + path + ", " + std::to_string(config_.vectors) + " vector(s) per peer");
  return {};
}

IvshmemServer::~IvshmemServer() {
  peers_.clear();  // closing the sockets is the only goodbye the protocol has
  if (listen_.valid()) {
    // Only unlink the file we created: a server started after us may own the path by now.
    struct stat st {};
    if (::lstat(config_.socket_path.c_str(), &st) == 0 && st.st_ino == socket_ino_) {
      ::unlink(config_.socket_path.c_str());
    }
  }
}

void IvshmemServer::request_stop() {
  stop_.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
}

Status IvshmemServer::run() {
  while (!stop_.load()) {
    if (auto s = poll_once(-1); !s) return s;
  }
  return {};
}

std::vector<PeerId> IvshmemServer::peer_ids() const {
  std::vector<PeerId> out;
  out.reserve(peers_.size());
  for (const auto& kv : peers_) out.push_back(kv.first);
  return out;
}

Status IvshmemServer::poll_once(int timeout_ms) {
  std::vector<pollfd> fds;
  std::vector<PeerId> ids;
  fds.push_back({wake_.get(), POLLIN, 0});
  const std::int64_t pause_left = accept_paused_until_ms_ - now_ms();
  const bool poll_listen = pause_left <= 0;
  if (poll_listen) {
    fds.push_back({listen_.get(), POLLIN, 0});
  } else if (timeout_ms < 0 || timeout_ms > pause_left) {
    timeout_ms = static_cast<int>(pause_left);
  }
  const std::size_t first_peer = fds.size();
  for (const auto& [id, p] : peers_) {
    const short events = static_cast<short>(POLLIN | (p.out.empty() ? 0 : POLLOUT));
    fds.push_back({p.sock.get(), events, 0});
    ids.push_back(id);
  }
  const int n = ::poll(fds.data(), fds.size(), timeout_ms);
  if (n < 0 && errno == EINTR) return {};
  if (n < 0) return errno_error("poll");

  if ((fds[0].revents & POLLIN) != 0) {
    std::uint64_t count = 0;
    [[maybe_unused]] auto r = ::read(wake_.get(), &count, sizeof count);
  }
  for (std::size_t i = first_peer; i < fds.size(); ++i) {
    const short rev = fds[i].revents;
    auto it = peers_.find(ids[i - first_peer]);
    if (rev == 0 || it == peers_.end()) continue;
    if ((rev & (POLLIN | POLLHUP | POLLERR)) != 0) {
      on_peer_readable(it->second);
    } else if ((rev & POLLOUT) != 0) {
      flush(it->second);
    }
  }
  // Reap before accepting so a newcomer never hears of a peer that is already gone, and can
  // reuse its id.
  reap();
  if (poll_listen && (fds[1].revents & POLLIN) != 0) accept_all();
  reap();
  return {};
}

void IvshmemServer::accept_all() {
  for (;;) {
    UniqueFd sock(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (sock.valid()) {
      add_peer(std::move(sock));
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      std::fprintf(stderr, "tosec-ivshmem-server: accept: %s; pausing new connections\n",
                   std::strerror(errno));
      accept_paused_until_ms_ = now_ms() + kAcceptBackoffMs;
    }
    return;  // EAGAIN: accepted everything pending
  }
}

void IvshmemServer::add_peer(UniqueFd sock) {
  auto id = ids_.allocate();
  if (!id) {
    std::fprintf(stderr, "tosec-ivshmem-server: all 65536 peer ids in use; refusing a peer\n");
    return;
  }
  Peer p;
  p.id = *id;
  p.sock = std::move(sock);
  for (unsigned v = 0; v < config_.vectors; ++v) {
    auto efd = rpc::make_eventfd();
    if (!efd) {
      std::fprintf(stderr, "tosec-ivshmem-server: refusing a peer: %s\n",
                   efd.error().message.c_str());
      ids_.release(*id);
      return;
    }
    p.vectors.push_back(std::make_shared<const UniqueFd>(std::move(*efd)));
  }
  // The order is the protocol (docs/ivshmem-protocol.md): version, id, shared memory; the
  // newcomer's vectors to everyone else; everyone else's vectors to the newcomer; and last the
  // newcomer's own vectors, which is how a client knows its handshake is complete.
  enqueue(p, rpc::ivshmem::kProtocolVersion, nullptr);
  enqueue(p, p.id, nullptr);
  enqueue(p, rpc::ivshmem::kShmMessage, shm_);
  for (auto& [other_id, other] : peers_) {
    for (const auto& v : p.vectors) enqueue(other, p.id, v);
  }
  for (auto& [other_id, other] : peers_) {
    for (const auto& v : other.vectors) enqueue(p, other_id, v);
  }
  for (const auto& v : p.vectors) enqueue(p, p.id, v);
  Peer& added = peers_.emplace(p.id, std::move(p)).first->second;
  for (auto& kv : peers_) flush(kv.second);
  log("peer " + std::to_string(added.id) + " joined (" + std::to_string(peers_.size()) +
      " connected)");
}

void IvshmemServer::enqueue(Peer& p, std::int64_t value, SharedFd fd) {
  if (!p.drop_reason.empty()) return;
  // A join enqueues a burst (peers x vectors) before flushing; only a peer whose socket buffer
  // is full as well is really not reading.
  if (p.out.size() >= config_.max_queued_per_peer) flush(p);
  if (p.out.size() >= config_.max_queued_per_peer) {
    drop(p, "not reading: " + std::to_string(p.out.size()) + " messages queued");
    return;
  }
  p.out.push_back({value, std::move(fd)});
}

void IvshmemServer::flush(Peer& p) {
  while (p.drop_reason.empty() && !p.out.empty()) {
    const Outgoing& m = p.out.front();
    auto sent = rpc::ivshmem::try_send_msg(p.sock.get(), m.value, m.fd ? m.fd->get() : -1);
    if (!sent) {
      // EPIPE/ECONNRESET: the peer hung up before reading everything; an ordinary departure.
      const int code = sent.error().code;
      drop(p, code == EPIPE || code == ECONNRESET ? "" : sent.error().message);
      return;
    }
    if (!*sent) return;  // socket full: POLLOUT resumes
    p.out.pop_front();
  }
}

void IvshmemServer::on_peer_readable(Peer& p) {
  char c = 0;
  const auto n = ::recv(p.sock.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) {
    drop(p, "");  // an orderly disconnect is the normal way to leave
  } else if (n > 0) {
    drop(p, "sent data, but the protocol is server-to-client only");
  } else if (errno == ECONNRESET) {
    drop(p, "");  // hung up with unread data queued: still just a departure
  } else if (errno != EAGAIN && errno != EINTR) {
    drop(p, std::string("socket error: ") + std::strerror(errno));
  }
}

void IvshmemServer::drop(Peer& p, std::string reason) {
  if (!p.drop_reason.empty()) return;
  if (!reason.empty()) {
    std::fprintf(stderr, "tosec-ivshmem-server: dropping peer %u: %s\n", unsigned{p.id},
                 reason.c_str());
  }
  p.drop_reason = reason.empty() ? "disconnected" : std::move(reason);
}

void IvshmemServer::reap() {
  for (;;) {
    auto it = peers_.begin();
    while (it != peers_.end() && it->second.drop_reason.empty()) ++it;
    if (it == peers_.end()) return;
    const PeerId id = it->first;
    peers_.erase(it);
    ids_.release(id);
    log("peer " + std::to_string(id) + " left (" + std::to_string(peers_.size()) + " connected)");
    for (auto& kv : peers_) {
      enqueue(kv.second, id, nullptr);
      flush(kv.second);
    }
  }
}

void IvshmemServer::log(const std::string& line) const {
  if (config_.verbose) {
    std::printf("tosec-ivshmem-server: %s\n", line.c_str());
    std::fflush(stdout);
  }
}

}  // namespace tosec::host
