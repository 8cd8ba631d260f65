#include "tosec/rpc/ivshmem_protocol.h"

#include <poll.h>
#include <sys/socket.h>

#include <bit>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace tosec::rpc::ivshmem {

namespace {

using Clock = std::chrono::steady_clock;
// nullopt = no deadline.
using Deadline = std::optional<Clock::time_point>;

constexpr std::size_t kMsgSize = sizeof(std::int64_t);
// Room for more fds than a valid message carries, so a sender that attaches several is reported
// (and all of them closed) instead of the kernel silently dropping the extras.
constexpr std::size_t kMaxFdsSeen = 8;

Deadline deadline_after(int timeout_ms) {
  if (timeout_ms < 0) return std::nullopt;
  return Clock::now() + std::chrono::milliseconds(timeout_ms);
}

// Waits until `sock` reports `events` (or an error/hangup, which the next call reports).
Status wait_for(int sock, short events, const Deadline& deadline, const char* what) {
  for (;;) {
    int timeout_ms = -1;
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
      if (left.count() <= 0) {
        return Error{ETIMEDOUT, std::string("ivshmem: timed out waiting to ") + what};
      }
      timeout_ms = static_cast<int>(left.count());
    }
    pollfd p{sock, events, 0};
    const int n = ::poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("ivshmem: poll");
    if (n > 0) return {};
  }
}

std::uint64_t to_le(std::uint64_t v) {
  if constexpr (std::endian::native == std::endian::big) return __builtin_bswap64(v);
  return v;
}

// ---- receive ----------------------------------------------------------------------------------

struct Partial {
  unsigned char bytes[kMsgSize] = {};
  std::size_t got = 0;
  std::vector<UniqueFd> fds;  // every fd that arrived with this message
  std::string malformed;      // why the control data was bad, empty if it was fine
};

// One recvmsg into the rest of `p`. Returns bytes read, 0 on EOF, -1 if nothing is available.
Result<long> recv_chunk(int sock, Partial& p) {
  iovec iov{p.bytes + p.got, kMsgSize - p.got};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kMaxFdsSeen)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  long n = 0;
  do {
    // MSG_CMSG_CLOEXEC: received fds must not leak into children we fork (QEMU, tests).
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return -1L;
    return errno_error("ivshmem: recvmsg");
  }
  // Take ownership of every fd first so that none leaks whatever else is wrong.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* data = CMSG_DATA(c);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, data + i * sizeof(int), sizeof fd);
        p.fds.emplace_back(fd);
      }
    } else if (p.malformed.empty()) {
      p.malformed = "unexpected control message (level " + std::to_string(c->cmsg_level) +
                    ", type " + std::to_string(c->cmsg_type) + ")";
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0 && p.malformed.empty()) {
    p.malformed = "control data truncated (more than " + std::to_string(kMaxFdsSeen) + " fds)";
  }
  p.got += static_cast<std::size_t>(n);
  return n;
}

Result<std::optional<Message>> receive(int sock, bool wait_for_start, Deadline deadline,
                                       int rest_timeout_ms) {
  Partial p;
  while (p.got < kMsgSize) {
    auto n = recv_chunk(sock, p);
    if (!n) return n.error();
    if (*n == 0) {
      if (p.got == 0) return Error{ECONNRESET, "ivshmem: connection closed by the other side"};
      return Error{EPROTO, "ivshmem: short message: connection closed after " +
                               std::to_string(p.got) + " of 8 bytes"};
    }
    if (*n > 0) {
      if (!wait_for_start && static_cast<std::size_t>(*n) == p.got) {
        deadline = deadline_after(rest_timeout_ms);  // the message has started
      }
      continue;
    }
    if (p.got == 0 && !wait_for_start) return std::optional<Message>{};
    if (auto s = wait_for(sock, POLLIN, deadline, "receive a message"); !s) {
      if (p.got == 0) return s.error();
      return Error{EPROTO, "ivshmem: short message: only " + std::to_string(p.got) +
                               " of 8 bytes arrived (" + s.message() + ")"};
    }
  }
  std::uint64_t raw = 0;
  std::memcpy(&raw, p.bytes, sizeof raw);
  const auto value = static_cast<std::int64_t>(to_le(raw));
  if (!p.malformed.empty()) {
    return Error{EPROTO, "ivshmem: message " + std::to_string(value) + ": " + p.malformed};
  }
  if (p.fds.size() > 1) {
    return Error{EPROTO, "ivshmem: message " + std::to_string(value) + " carried " +
                             std::to_string(p.fds.size()) + " fds, at most 1 is allowed"};
  }
  Message m;
  m.value = value;
  if (!p.fds.empty()) m.fd = std::move(p.fds.front());
  return std::optional<Message>(std::move(m));
}

// ---- send -------------------------------------------------------------------------------------

// One sendmsg of bytes [sent, 8) of `le`; the fd rides on the first byte only.
Result<long> send_chunk(int sock, const unsigned char* le, std::size_t sent, int fd) {
  iovec iov{const_cast<unsigned char*>(le + sent), kMsgSize - sent};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0 && sent == 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  long n = 0;
  do {
    // MSG_NOSIGNAL: a peer that went away must cost an EPIPE, not the whole server.
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return -1L;
    return errno_error("ivshmem: sendmsg(" + std::to_string(fd >= 0 ? 1 : 0) + " fd)");
  }
  return n;
}

Status send_rest(int sock, const unsigned char* le, std::size_t sent, int fd,
                 const Deadline& deadline) {
  while (sent < kMsgSize) {
    auto n = send_chunk(sock, le, sent, fd);
    if (!n) return n.error();
    if (*n >= 0) {
      sent += static_cast<std::size_t>(*n);
      continue;
    }
    if (auto s = wait_for(sock, POLLOUT, deadline, "send a message"); !s) return s;
  }
  return {};
}

}  // namespace

Status send_msg(int sock, std::int64_t value, int fd, int timeout_ms) {
  const std::uint64_t raw = to_le(static_cast<std::uint64_t>(value));
  unsigned char le[kMsgSize];
  std::memcpy(le, &raw, sizeof le);
  return send_rest(sock, le, 0, fd, deadline_after(timeout_ms));
}

Result<bool> try_send_msg(int sock, std::int64_t value, int fd) {
  const std::uint64_t raw = to_le(static_cast<std::uint64_t>(value));
  unsigned char le[kMsgSize];
  std::memcpy(le, &raw, sizeof le);
  auto n = send_chunk(sock, le, 0, fd);
  if (!n) return n.error();
  if (*n < 0) return false;
  if (auto s = send_rest(sock, le, static_cast<std::size_t>(*n), fd, deadline_after(1000)); !s) {
    return s.error();
  }
  return true;
}

Result<Message> recv_msg(int sock, int timeout_ms) {
  auto r = receive(sock, true, deadline_after(timeout_ms), timeout_ms);
  if (!r) return r.error();
  return std::move(**r);
}

Result<std::optional<Message>> try_recv_msg(int sock, int rest_timeout_ms) {
  return receive(sock, false, std::nullopt, rest_timeout_ms);
}

}  // namespace tosec::rpc::ivshmem
