#include "tosec/agent/shim_sockets.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "tosec/rpc/ivshmem_protocol.h"

namespace tosec::agent {

namespace {
constexpr int kSendTimeoutMs = 1000;
}

rpc::Result<rpc::UniqueFd> listen_unix(const std::string& path, int type) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path) {
    return rpc::Error{ENAMETOOLONG, "socket path '" + path + "' empty or too long"};
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  ::unlink(path.c_str());  // a stale socket of an earlier agent
  rpc::UniqueFd fd(::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return rpc::errno_error("socket(" + path + ")");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    return rpc::errno_error("bind(" + path + ")");
  }
  if (::chmod(path.c_str(), 0666) != 0) return rpc::errno_error("chmod(" + path + ")");
  if (::listen(fd.get(), 64) != 0) return rpc::errno_error("listen(" + path + ")");
  return fd;
}

pid_t peer_pid(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
  return cred.pid;
}

rpc::Status send_ivshmem_join(int sock, const ShimJoin& j) {
  namespace iv = rpc::ivshmem;
  auto send = [&](std::int64_t value, int fd, const char* what) -> rpc::Status {
    if (auto s = iv::send_msg(sock, value, fd, kSendTimeoutMs); !s) {
      return rpc::Error{s.code(), std::string("ivshmem join: ") + what + ": " + s.message()};
    }
    return {};
  };
  if (auto s = send(iv::kProtocolVersion, -1, "version"); !s) return s;
  if (auto s = send(j.self, -1, "peer id"); !s) return s;
  if (auto s = send(iv::kShmMessage, j.region_fd, "region"); !s) return s;
  // The TOE's vectors first, so the shim knows its peer complete before its own handshake ends.
  for (int fd : j.toe_fds) {
    if (auto s = send(j.toe_peer, fd, "TOE vector"); !s) return s;
  }
  for (std::size_t i = 0; i < j.toe_fds.size(); ++i) {
    if (auto s = send(j.self, j.own_fd, "own vector"); !s) return s;
  }
  return {};
}

SidecarMessage read_sidecar(int sock, bool first) {
  SidecarMessage m;
  union {
    rpc::SidecarHello hello;
    rpc::SidecarFd fd;
    unsigned char bytes[64];
  } buf{};
  static_assert(sizeof(rpc::SidecarHello) == sizeof(rpc::SidecarFd));
  iovec iov{buf.bytes, sizeof buf.bytes};
  alignas(cmsghdr) unsigned char ctl[CMSG_SPACE(sizeof(int) * 4)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl;
  msg.msg_controllen = sizeof ctl;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return m;
    m.kind = SidecarMessage::Kind::kEof;  // ECONNRESET and friends: the process is gone
    return m;
  }
  // Take every fd first so none leaks, whatever else is wrong; keep only the first.
  int fds_seen = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      rpc::UniqueFd owned(fd);
      if (fds_seen++ == 0) m.fd = std::move(owned);
    }
  }
  if (n == 0) {
    m.kind = SidecarMessage::Kind::kEof;
    return m;
  }
  m.kind = SidecarMessage::Kind::kBad;
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    m.error = "truncated message";
  } else if (n != static_cast<ssize_t>(sizeof(rpc::SidecarHello))) {
    m.error = "message of " + std::to_string(n) + " bytes (expected 16)";
  } else if (first) {
    m.hello = buf.hello;
    if (m.hello.magic != rpc::kSidecarMagic) {
      m.error = "hello magic " + std::to_string(m.hello.magic);
    } else if (m.fd.valid()) {
      m.error = "hello carried an fd";
    } else {
      m.kind = SidecarMessage::Kind::kHello;
    }
  } else {
    m.fd_msg = buf.fd;
    if (m.fd_msg.magic != rpc::kSidecarMagic) {
      m.error = "SidecarFd magic " + std::to_string(m.fd_msg.magic);
    } else if (!m.fd.valid() || fds_seen != 1) {
      m.error = "SidecarFd with " + std::to_string(fds_seen) + " fds (expected 1)";
    } else {
      m.kind = SidecarMessage::Kind::kFd;
    }
  }
  if (m.kind == SidecarMessage::Kind::kBad) m.fd.reset();
  return m;
}

rpc::Status send_welcome(int sock, const rpc::SidecarWelcome& w) {
  if (::send(sock, &w, sizeof w, MSG_NOSIGNAL | MSG_DONTWAIT) != static_cast<ssize_t>(sizeof w)) {
    return rpc::errno_error("sidecar welcome");
  }
  return {};
}

}  // namespace tosec::agent
