// Data path: send (asynchronous within the socket's credit, decision 0004 point 5) and recv
// (consuming the socket's rx ring, point 6), with the readiness protocol of guest_channel.h.
#include <fcntl.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <span>
#include <vector>

#include "config.h"
#include "ops.h"
#include "real_calls.h"

namespace tosec::guest {

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Remaining time of a call with SO_*TIMEO `timeout` that started at t0 (-1: none).
std::int64_t remaining(std::int64_t timeout, std::int64_t t0) {
  if (timeout < 0) return -1;
  const std::int64_t left = timeout - (now_ns() - t0);
  return left > 0 ? left : 0;
}

void raise_sigpipe(int flags) {
  if ((flags & MSG_NOSIGNAL) == 0) pthread_kill(pthread_self(), SIGPIPE);
}

std::size_t iov_total(const iovec* iov, std::size_t n) {
  std::size_t t = 0;
  for (std::size_t i = 0; i < n; ++i) t += iov[i].iov_len;
  return t;
}

// Copies `n` bytes starting `skip` bytes into the iovecs to dst.
void gather(const iovec* iov, std::size_t iovcnt, std::size_t skip, std::byte* dst, std::size_t n) {
  for (std::size_t i = 0; i < iovcnt && n > 0; ++i) {
    if (skip >= iov[i].iov_len) {
      skip -= iov[i].iov_len;
      continue;
    }
    const std::size_t k = std::min(n, iov[i].iov_len - skip);
    std::memcpy(dst, static_cast<const std::byte*>(iov[i].iov_base) + skip, k);
    dst += k;
    n -= k;
    skip = 0;
  }
}

// Error a send must report before doing anything, or 0.
long send_precheck(const Sock& s) {
  if (s.p->check_dead()) return -EPIPE;
  if (const int e = s.local->async_error.exchange(0); e != 0) return -e;
  const std::uint32_t ev = s.slot->events.load(std::memory_order_acquire);
  if ((ev & rpc::kEvReset) != 0) {
    (void)take_so_error(s);  // the same reset: SO_ERROR must not report it again
    clear_placeholder_error(s);
    return s.local->reset_reported.exchange(true) ? -EPIPE : -ECONNRESET;
  }
  if ((ev & rpc::kEvWriteShut) != 0) return -EPIPE;
  if (const int e = take_so_error(s); e != 0) return -e;
  return 0;
}

// Makes A unwritable and publishes tx_blocked, then re-checks (Dekker): true if credit came
// back meanwhile (the TOE was kicked to drain B, the caller retries at once).
bool block_tx(const Sock& s) {
  fill_placeholder(s);
  s.p->reap();
  if (s.local->credit.inflight() < s.local->credit.limit()) {
    kick(s, 2);
    return true;
  }
  return false;
}

long send_stream(const Sock& s, const iovec* iov, std::size_t iovcnt, int flags) {
  const std::size_t total = iov_total(iov, iovcnt);
  const bool nonblock = s.nonblock() || (flags & MSG_DONTWAIT) != 0;
  const auto st = s.slot->state.load(std::memory_order_acquire);
  // Linux (tcp_sendmsg): a stream socket that is not connected or connecting gives EPIPE.
  if (st == rpc::SocketState::kOpen || st == rpc::SocketState::kListening) return -EPIPE;
  const std::int64_t timeout = s.local->sndtimeo_ns.load();
  const std::int64_t t0 = timeout >= 0 ? now_ns() : 0;
  std::size_t done = 0;
  s.p->reap();
  while (done < total || total == 0) {
    if (total == 0) return 0;
    if (done == 0 || !nonblock) {
      if (const long e = send_precheck(s); e < 0) {
        if (done > 0) return static_cast<long>(done);
        return e;
      }
    }
    const auto now = s.slot->state.load(std::memory_order_acquire);
    std::size_t grant = 0;
    std::uint32_t chunk = 0;
    bool have_chunk = false;
    if (now == rpc::SocketState::kConnected) {
      grant = s.local->credit.acquire(std::min<std::size_t>(total - done, s.p->chunk_size()));
      if (grant > 0) {
        auto c = s.p->tx_alloc(false);
        if (c) {
          chunk = *c;
          have_chunk = true;
        } else {
          s.local->credit.release(grant);
          grant = 0;
        }
      }
    } else if (now != rpc::SocketState::kConnecting) {
      if (done > 0) return static_cast<long>(done);
      const int e = take_so_error(s);
      return e != 0 ? -e : -EPIPE;
    }
    if (!have_chunk) {
      // Out of credit or chunks (or still connecting): A's writability tells when to retry.
      if (now == rpc::SocketState::kConnected && block_tx(s)) continue;
      if (nonblock) return done > 0 ? static_cast<long>(done) : -EAGAIN;
      const int w = wait_placeholder(s, POLLOUT, remaining(timeout, t0));
      s.p->reap();
      if (w < 0) {
        if (done > 0) return static_cast<long>(done);
        return w == -ECONNRESET ? -EPIPE : w;
      }
      continue;
    }
    gather(iov, iovcnt, done, s.p->tx_chunk(chunk).data(), grant);
    const std::uint64_t pass = static_cast<std::uint64_t>(flags & (MSG_MORE | MSG_OOB));
    if (auto r = s.p->send_async(s.ref.id, chunk, static_cast<std::uint32_t>(grant), pass, 0); !r) {
      return done > 0 ? static_cast<long>(done) : -EPIPE;
    }
    done += grant;
  }
  return static_cast<long>(done);
}

long send_dgram(const Sock& s, const iovec* iov, std::size_t iovcnt, int flags, const sockaddr* to,
                socklen_t tolen) {
  const std::size_t total = iov_total(iov, iovcnt);
  if (to != nullptr && tolen > 128) return -EINVAL;
  const std::size_t alen = to != nullptr ? tolen : 0;
  if (total + alen > s.p->chunk_size()) return -EMSGSIZE;
  if (to == nullptr && s.slot->peer.length == 0) return -EDESTADDRREQ;
  if (const long e = send_precheck(s); e < 0) return e;
  s.p->reap();
  auto c = s.p->tx_alloc(!(s.nonblock() || (flags & MSG_DONTWAIT) != 0));
  if (!c) return c.error().code == ENOBUFS ? -EAGAIN : -c.error().code;
  std::byte* dst = s.p->tx_chunk(*c).data();
  if (alen > 0) std::memcpy(dst, to, alen);
  gather(iov, iovcnt, 0, dst + alen, total);
  (void)s.local->credit.acquire(total);  // datagrams are not held back by credit (UDP drops)
  if (auto r = s.p->send_async(s.ref.id, *c, static_cast<std::uint32_t>(total + alen),
                               static_cast<std::uint64_t>(flags & MSG_MORE),
                               static_cast<std::uint32_t>(alen));
      !r) {
    return -EPIPE;
  }
  return static_cast<long>(total);
}

}  // namespace

bool has_rx_work(const Sock& s) {
  if (!s.p->rx_ring(s.ref.id).empty()) return true;
  if ((s.slot->events.load(std::memory_order_acquire) &
       (rpc::kEvPeerClosed | rpc::kEvReset | rpc::kEvError)) != 0) {
    return true;
  }
  if (s.slot->error_seq.load(std::memory_order_acquire) != s.slot->guest_error_seq) return true;
  return s.slot->accept_ready.load(std::memory_order_acquire) > 0;
}

namespace {
// Whether the TOE wrote readiness bytes into A that the guest has not read (or is about to
// write one): the TOE counts before it writes (guest_channel.h, refinement 2). Under rx_lock.
bool a_may_hold_bytes(const Sock& s) {
  return s.slot->rx_bytes_signalled.load(std::memory_order_acquire) != s.slot->rx_bytes_drained;
}
}  // namespace

void keep_readable(const Sock& s) {
  // Caller holds rx_lock and left entries in the ring. Arrivals while a reader claimed the
  // socket wrote no byte: without one, A would not look readable for data that is there.
  if (!a_may_hold_bytes(s)) kick(s, 1);
}

bool rearm_readable(const Sock& s) {
  // Caller holds the slot's rx_lock. EOF and errors keep A readable for good.
  if ((s.slot->events.load(std::memory_order_acquire) &
       (rpc::kEvPeerClosed | rpc::kEvReset | rpc::kEvError)) != 0) {
    return false;
  }
  // 1) take the readiness bytes out of A ... exactly as many as SIOCINQ counts, so that a recv
  // never meets an empty A: once the TOE killed the placeholder (B closed after a reset,
  // GuestSession::kill_placeholder) that recv would consume the ECONNRESET behind A's POLLERR.
  // (Counting first also saves the recv that used to end every drain with EAGAIN.)
  // Bytes that arrive after the count keep A readable: the re-check below finds their entries.
  // Equal counts: the TOE wrote no byte we have not read (or claimed arrivals wrote none), so
  // A is empty and the two system calls are skipped (guest_channel.h, refinement 2).
  char buf[64];
  int queued = 0;
  if (a_may_hold_bytes(s) && real().ioctl(s.fd, SIOCINQ, &queued) == 0) {
    auto left = static_cast<std::size_t>(std::max(queued, 0));
    while (left > 0) {
      const ssize_t n = real().recv(s.fd, buf, std::min(sizeof buf, left), MSG_DONTWAIT);
      if (n <= 0) break;
      left -= static_cast<std::size_t>(n);
      s.slot->rx_bytes_drained += static_cast<std::uint32_t>(n);
    }
  }
  // 2) ... tell the TOE the next arrival must write a byte again, 3) re-check (Dekker).
  s.slot->rx_signalled.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (has_rx_work(s)) {
    kick(s, 1);  // it may have seen rx_signalled == 1 and skipped the byte: ask again
    return true;
  }
  return false;
}

long op_sendmsg(int fd, const msghdr* msg, int flags) {
  auto s = resolve(fd);
  if (!s) {
    const ssize_t r = real().sendmsg(fd, msg, flags);
    return r >= 0 ? r : -errno;
  }
  if (msg == nullptr) return -EFAULT;
  if (!s->stream() && msg->msg_name != nullptr &&
      config().exclude.excludes(static_cast<const sockaddr*>(msg->msg_name), msg->msg_namelen) &&
      convertible(*s)) {
    if (const long e = convert_to_kernel(*s); e < 0) return e;
    const ssize_t r = real().sendmsg(fd, msg, flags);
    return r >= 0 ? r : -errno;
  }
  if (msg->msg_controllen > 0) return -EOPNOTSUPP;  // no ancillary data on offloaded sockets
  long r;
  if (s->stream()) {
    // A destination on a connected stream socket is ignored (Linux: EISCONN only if
    // not connected-mode; glibc apps pass NULL anyway).
    r = send_stream(*s, msg->msg_iov, msg->msg_iovlen, flags);
  } else {
    r = send_dgram(*s, msg->msg_iov, msg->msg_iovlen, flags,
                   static_cast<const sockaddr*>(msg->msg_name), msg->msg_namelen);
  }
  if (r == -EPIPE) raise_sigpipe(flags);
  return r;
}

long op_recvmsg(int fd, msghdr* msg, int flags) {
  auto s = resolve(fd);
  if (!s) {
    const ssize_t r = real().recvmsg(fd, msg, flags);
    return r >= 0 ? r : -errno;
  }
  if (msg == nullptr) return -EFAULT;
  const bool peek = (flags & MSG_PEEK) != 0;
  const bool nonblock = s->nonblock() || (flags & MSG_DONTWAIT) != 0;
  const bool dgram = !s->stream();
  const bool waitall = (flags & MSG_WAITALL) != 0 && !peek && !dgram && !nonblock;
  const std::size_t want = iov_total(msg->msg_iov, msg->msg_iovlen);
  msg->msg_flags = 0;
  msg->msg_controllen = 0;
  if (want == 0 && !dgram) return 0;
  const std::int64_t timeout = s->local->rcvtimeo_ns.load();
  const std::int64_t t0 = timeout >= 0 ? now_ns() : 0;
  // The caller's iovecs as they are; MSG_WAITALL copies them once to trim filled prefixes.
  std::span<const iovec> iov(msg->msg_iov, msg->msg_iovlen);
  std::vector<iovec> rest;
  std::size_t got = 0;
  auto give_back = [&](std::uint32_t chunk) {
    rpc::Descriptor d{};
    d.op = static_cast<std::uint16_t>(rpc::Op::kBufferReturn);
    d.socket = s->ref.id;
    d.pool = static_cast<std::uint16_t>(rpc::PoolId::kRx);
    d.chunk = chunk;
    d.arg0 = s->ref.generation;  // names the loan: a late return cannot end a newer one
    (void)s->p->post_lazy(d, &s->slot->rx_paused);
  };
  const RxRing ring = s->p->rx_ring(s->ref.id);
  for (;;) {
    RxConsumeResult res;
    bool arrived = false;
    {
      RxLock lk(s->slot->rx_lock, s->p->rx_lock_owner());
      res = rx_consume(ring, iov, peek, dgram, give_back);
      if (res.error != 0) return -EIO;
      // Consumed everything: A must stop looking readable, unless EOF/error keep it so.
      if (!peek && ring.empty() && (res.copied > 0 || res.got_dgram)) {
        arrived = rearm_readable(*s);
      } else if (!ring.empty()) {
        keep_readable(*s);
      }
    }
    (void)arrived;
    if (dgram && res.got_dgram) {
      if (msg->msg_name != nullptr) {
        const socklen_t n = res.from.length != 0 ? res.from.length : s->slot->peer.length;
        const std::uint8_t* src = res.from.length != 0 ? res.from.bytes : s->slot->peer.bytes;
        std::memcpy(msg->msg_name, src, std::min(msg->msg_namelen, n));
        msg->msg_namelen = n;
      }
      if (res.copied < res.dgram_len) msg->msg_flags |= MSG_TRUNC;
      return static_cast<long>((flags & MSG_TRUNC) != 0 ? res.dgram_len : res.copied);
    }
    if (res.copied > 0) {
      got += res.copied;
      if (!waitall || got >= want) {
        if (msg->msg_name != nullptr) msg->msg_namelen = 0;
        return static_cast<long>(got);
      }
      // MSG_WAITALL: drop the filled prefix of the iovecs and keep going.
      if (rest.empty()) rest.assign(iov.begin(), iov.end());
      std::size_t skip = res.copied;
      while (!rest.empty() && skip >= rest.front().iov_len) {
        skip -= rest.front().iov_len;
        rest.erase(rest.begin());
      }
      if (!rest.empty()) {
        rest.front().iov_base = static_cast<std::byte*>(rest.front().iov_base) + skip;
        rest.front().iov_len -= skip;
      }
      iov = rest;
      continue;
    }
    // Nothing to read: EOF, error, or wait.
    const std::uint32_t ev = s->slot->events.load(std::memory_order_acquire);
    // The TOE pushes the last data before it publishes the FIN or error (release); data that
    // landed between our consume and this load goes first, as on a kernel socket. (Returning
    // 0 here lost a TCP_CRR response: netperf saw EOF, then the response after shutdown.)
    if (ev != 0 && !ring.empty()) continue;
    if ((ev & rpc::kEvReset) != 0) {
      if (got > 0) return static_cast<long>(got);
      (void)take_so_error(*s);  // the same reset: SO_ERROR must not report it again
      clear_placeholder_error(*s);
      return s->local->reset_reported.exchange(true) ? 0 : -ECONNRESET;
    }
    if (const int e = take_so_error(*s); e != 0) return got > 0 ? static_cast<long>(got) : -e;
    if ((ev & rpc::kEvPeerClosed) != 0 || s->local->rd_shut.load()) {
      return static_cast<long>(got);
    }
    if (s->p->check_dead()) return got > 0 ? static_cast<long>(got) : -ECONNRESET;
    if (!dgram) {
      const auto st = s->slot->state.load(std::memory_order_acquire);
      if (st == rpc::SocketState::kOpen || st == rpc::SocketState::kListening) return -ENOTCONN;
    }
    {
      RxLock lk(s->slot->rx_lock, s->p->rx_lock_owner());
      if (ring.empty() && rearm_readable(*s)) continue;
    }
    if (nonblock) return got > 0 ? static_cast<long>(got) : -EAGAIN;
    const int w = wait_placeholder(*s, POLLIN, remaining(timeout, t0));
    if (w < 0) return got > 0 ? static_cast<long>(got) : w;
  }
}

long op_sendfile(int out_fd, int in_fd, off_t* offset, std::size_t count) {
  auto s = resolve(out_fd);
  if (!s) {
    const ssize_t r = real().sendfile(out_fd, in_fd, offset, count);
    return r >= 0 ? r : -errno;
  }
  static thread_local std::vector<char> buf;
  if (buf.empty()) buf.resize(64 * 1024);
  std::size_t total = 0;
  off_t pos = offset != nullptr ? *offset : 0;
  while (total < count) {
    const std::size_t k = std::min(count - total, buf.size());
    const ssize_t n = offset != nullptr ? real().pread(in_fd, buf.data(), k, pos)
                                        : real().read(in_fd, buf.data(), k);
    if (n < 0) {
      if (total > 0) break;
      return -errno;
    }
    if (n == 0) break;
    iovec v{buf.data(), static_cast<std::size_t>(n)};
    msghdr m{};
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    const long sent = op_sendmsg(out_fd, &m, 0);
    if (sent < 0) {
      if (offset == nullptr) (void)lseek(in_fd, -n, SEEK_CUR);
      if (total > 0) break;
      return sent;
    }
    total += static_cast<std::size_t>(sent);
    pos += sent;
    if (sent < n) {
      if (offset == nullptr) (void)lseek(in_fd, sent - n, SEEK_CUR);
      break;
    }
  }
  if (offset != nullptr) *offset = pos;
  return static_cast<long>(total);
}

long op_fcntl(int fd, int cmd, long arg) {
  auto s = resolve(fd);
  const int r = real().fcntl(fd, cmd, arg);
  if (r < 0) return -errno;
  if (!s) {
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) fd_table().copy(fd, r);
    return r;
  }
  switch (cmd) {
    case F_SETFL:
      s->slot->nonblock.store((arg & O_NONBLOCK) != 0 ? 1 : 0, std::memory_order_relaxed);
      break;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      fd_table().copy(fd, r);
      break;
    default:
      break;
  }
  return r;
}

long op_ioctl(int fd, unsigned long request, void* arg) {
  auto s = resolve(fd);
  if (!s) {
    const int r = real().ioctl(fd, request, arg);
    return r >= 0 ? r : -errno;
  }
  switch (request) {
    case FIONBIO: {
      const int r = real().ioctl(fd, request, arg);  // sets O_NONBLOCK on A's description
      if (r < 0) return -errno;
      int on = 0;
      std::memcpy(&on, arg, sizeof on);
      s->slot->nonblock.store(on != 0 ? 1 : 0, std::memory_order_relaxed);
      return 0;
    }
    case FIONREAD: {  // == SIOCINQ
      if (s->slot->state.load() == rpc::SocketState::kListening) return -EINVAL;
      std::size_t n;
      {
        RxLock lk(s->slot->rx_lock, s->p->rx_lock_owner());
        n = rx_readable(s->p->rx_ring(s->ref.id), !s->stream());
      }
      const int v = static_cast<int>(std::min<std::size_t>(n, INT32_MAX));
      std::memcpy(arg, &v, sizeof v);
      return 0;
    }
    case SIOCOUTQ: {
      s->p->reap();
      const int v = static_cast<int>(std::min<std::size_t>(s->local->credit.inflight(), INT32_MAX));
      std::memcpy(arg, &v, sizeof v);
      return 0;
    }
    default:
      return -ENOTTY;
  }
}

long op_dup(int fd) {
  const int r = real().dup(fd);
  if (r < 0) return -errno;
  fd_table().copy(fd, r);
  return r;
}

long op_dup3(int oldfd, int newfd, int flags, bool is_dup2) {
  if (is_dup2 && oldfd == newfd) return real().dup2(oldfd, newfd) >= 0 ? newfd : -errno;
  // Resolve first: after exec the old fd may still be unknown.
  (void)resolve(oldfd);
  const int r = is_dup2 ? real().dup2(oldfd, newfd) : real().dup3(oldfd, newfd, flags);
  if (r < 0) return -errno;
  fd_replaced(newfd);
  fd_table().copy(oldfd, newfd);
  return r;
}

}  // namespace tosec::guest
