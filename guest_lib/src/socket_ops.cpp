// Control-path socket calls: socket, bind, listen, accept, connect, shutdown, close, names,
// options. Each forwards one descriptor to the TOE over the lane (Platform::call).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "config.h"
#include "ops.h"
#include "real_calls.h"

namespace tosec::guest {

int placeholder_rcvbuf();

namespace {

constexpr int kPlaceholderSndbuf = 4096;  // the kernel's minimum: few junk bytes fill A

rpc::Descriptor desc(rpc::Op op, std::uint32_t socket) {
  rpc::Descriptor d{};
  d.op = static_cast<std::uint16_t>(op);
  d.socket = socket;
  return d;
}

// Calls `op` with `bytes` copied into a tx chunk (bind/connect addresses, option values).
long call_with_buffer(Platform* p, rpc::Descriptor d, const void* bytes, std::size_t len) {
  if (len > p->chunk_size()) return -EINVAL;
  auto c = p->tx_alloc(true);
  if (!c) return -c.error().code;
  if (len > 0) std::memcpy(p->tx_chunk(*c).data(), bytes, len);
  d.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
  d.chunk = *c;
  d.offset = 0;
  d.length = static_cast<std::uint32_t>(len);
  auto r = p->call(d);
  p->tx_free(*c);  // the TOE is done with it when it completes
  if (!r) return -r.error().code;
  return static_cast<long>(r->result);
}

long kernel_socket(int domain, int type, int protocol) {
  const int fd = real().socket(domain, type, protocol);
  if (fd < 0) return -errno;
  fd_table().set_kernel(fd);
  return fd;
}

void copy_address(const rpc::SlotAddress& a, int family, sockaddr* out, socklen_t* len) {
  sockaddr_storage ss{};
  socklen_t n = a.length;
  if (n == 0 || n > sizeof a.bytes) {
    // Not published yet: the unspecified address of the socket's family, port 0.
    ss.ss_family = static_cast<sa_family_t>(family);
    n = family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  } else {
    std::memcpy(&ss, a.bytes, n);
  }
  if (out != nullptr && len != nullptr) std::memcpy(out, &ss, std::min(*len, n));
  if (len != nullptr) *len = n;
}

void remember_option(SocketLocal& l, int level, int name, const void* value, socklen_t len) {
  std::lock_guard lk(l.opts_mu);
  for (auto& o : l.opts) {
    if (o.level == level && o.name == name) {
      o.value.assign(static_cast<const unsigned char*>(value),
                     static_cast<const unsigned char*>(value) + len);
      return;
    }
  }
  l.opts.push_back({level, name,
                    std::vector<unsigned char>(static_cast<const unsigned char*>(value),
                                               static_cast<const unsigned char*>(value) + len)});
}

// kGetsockopt / kSetsockopt of (level, name) on socket `id`.
rpc::Descriptor option_desc(rpc::Op op, std::uint32_t id, int level, int name) {
  rpc::Descriptor d = desc(op, id);
  d.arg0 = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(level)) << 32) |
           static_cast<std::uint32_t>(name);
  return d;
}

// Options that take an int flag and that Linux accepts on any socket of this type whatever
// its value: setsockopt() posts them without waiting for the TOE (kDescFlagNoReply).
bool postable_option(const Sock& s, int level, int name, socklen_t len) {
  if (len < sizeof(int)) return false;  // EINVAL, which the TOE's kernel call reports
  if (level == SOL_SOCKET) {
    return name == SO_REUSEADDR || name == SO_REUSEPORT || name == SO_KEEPALIVE;
  }
  return level == IPPROTO_TCP && name == TCP_NODELAY && s.stream();
}

}  // namespace

long convert_to_kernel(const Sock& s) {
  const int domain = s.slot->family != 0 ? int{s.slot->family} : AF_INET;
  const int type = s.slot->type != 0 ? int{s.slot->type} : static_cast<int>(SOCK_STREAM);
  const int k = real().socket(domain, type | SOCK_CLOEXEC, s.slot->protocol);
  if (k < 0) return -errno;
  {
    std::lock_guard lk(s.local->opts_mu);
    for (const auto& o : s.local->opts) {
      (void)real().setsockopt(k, o.level, o.name, o.value.data(),
                              static_cast<socklen_t>(o.value.size()));
    }
  }
  if (s.nonblock()) (void)real().fcntl(k, F_SETFL, O_NONBLOCK);
  const int fdflags = real().fcntl(s.fd, F_GETFD);
  const int r = real().dup3(k, s.fd, (fdflags & FD_CLOEXEC) != 0 ? O_CLOEXEC : 0);
  const int err = errno;
  real().close(k);
  if (r < 0) return -err;
  // Our reference to A is gone: if it was the last, the TOE sees EOF on B and frees the id.
  wake_waiters(s.ref.id);
  fd_table().set_kernel(s.fd);
  log(LogLevel::kDebug, "fd " + std::to_string(s.fd) + " excluded: now a kernel socket");
  return 0;
}

bool convertible(const Sock& s) {
  return s.slot->state.load(std::memory_order_acquire) == rpc::SocketState::kOpen &&
         s.slot->local.length == 0;
}

void kick(const Sock& s, std::uint64_t what) {
  rpc::Descriptor d{};
  d.op = rpc::kOpKick;
  d.socket = s.ref.id;
  d.arg0 = what;
  (void)s.p->post(d);
}

void fill_placeholder(const Sock& s) {
  // A reports POLLOUT while its queued bytes' memory is at most a quarter of its send buffer
  // (8 KiB): 2 KiB of junk are enough to cross that line. The fill ends with a sentinel byte
  // the TOE leaves in B (guest_channel.h, "A's sentinel"); both sends succeed because A was
  // writable before (its send buffer then has room for both). An A that is already unwritable
  // is left alone, so that the sentinel stays the last byte queued.
  pollfd p{s.fd, POLLOUT, 0};
  if (::poll(&p, 1, 0) >= 0 && (p.revents & POLLOUT) != 0) {  // poll is never interposed
    static const char junk[2048] = {};
    if (real().send(s.fd, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
      const char sentinel = rpc::kPlaceholderSentinel;
      (void)real().send(s.fd, &sentinel, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
  }
  // Published after the fill: the TOE drains B only when it takes tx_blocked set, so a clear
  // flag must mean there is no junk (make_writable). The fence orders it before the caller's
  // re-check (Dekker).
  s.slot->tx_blocked.store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

int take_so_error(const Sock& s) {
  const std::uint32_t seq = s.slot->error_seq.load(std::memory_order_acquire);
  if (seq == s.slot->guest_error_seq) return 0;
  const int e = s.slot->so_error.load(std::memory_order_acquire);
  s.slot->guest_error_seq = seq;
  clear_placeholder_error(s);
  return e;
}

void clear_placeholder_error(const Sock& s) {
  // The error is being reported to the application: like a TCP socket, A stops showing POLLERR
  // (the TOE's kill_placeholder left ECONNRESET in A's sk_err; SO_ERROR reads and clears it).
  if (!s.stream() ||
      (s.slot->events.load(std::memory_order_acquire) & (rpc::kEvError | rpc::kEvReset)) == 0) {
    return;
  }
  int v = 0;
  socklen_t len = sizeof v;
  (void)real().getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &v, &len);
}

int make_placeholder(int type_flags, int sv[2]) {
  if (real().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -errno;
  if (sv[0] >= FdTable::kMaxFd) {
    real().close(sv[0]);
    real().close(sv[1]);
    return -EMFILE;
  }
  if ((type_flags & SOCK_CLOEXEC) == 0) (void)real().fcntl(sv[0], F_SETFD, 0);
  if ((type_flags & SOCK_NONBLOCK) != 0) (void)real().fcntl(sv[0], F_SETFL, O_RDWR | O_NONBLOCK);
  const int snd = kPlaceholderSndbuf;
  const int rcv = placeholder_rcvbuf();
  (void)real().setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
  (void)real().setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  // The sentinel: one byte the TOE never drains out of B, so that B closed by the TOE after a
  // reset or refused connect sets ECONNRESET (POLLERR) on A (GuestSession::kill_placeholder).
  const char sentinel = rpc::kPlaceholderSentinel;
  (void)real().send(sv[0], &sentinel, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  return 0;
}

int adopt_socket(Platform* p, int a, std::uint32_t id, int type_flags) {
  rpc::SocketSlot* slot = p->slot(id);
  if (slot == nullptr) return -EPROTO;
  struct stat st {};
  if (fstat(a, &st) == 0) {
    slot->placeholder_ino = st.st_ino;
    slot->placeholder_dev = st.st_dev;
  }
  slot->nonblock.store((type_flags & SOCK_NONBLOCK) != 0 ? 1 : 0, std::memory_order_relaxed);
  const std::uint32_t gen = slot->generation.load(std::memory_order_acquire);
  SocketLocal& l = p->local(id);
  l.generation = gen;
  l.credit.reset();
  l.credit.set_limit(256 * 1024);
  l.async_error = 0;
  l.reset_reported = false;
  l.rd_shut = false;
  l.rcvtimeo_ns = -1;
  l.sndtimeo_ns = -1;
  {
    std::lock_guard lk(l.opts_mu);
    l.opts.clear();
  }
  fd_table().set_offloaded(a, {id, gen});
  return a;
}

long op_socket(int domain, int type, int protocol) {
  const int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  const bool offloadable = config().offload && (domain == AF_INET || domain == AF_INET6) &&
                           (base == SOCK_STREAM || base == SOCK_DGRAM) &&
                           (protocol == 0 || protocol == IPPROTO_TCP || protocol == IPPROTO_UDP);
  if (!offloadable) return kernel_socket(domain, type, protocol);
  Platform* p = Platform::get();
  if (p == nullptr || p->dead()) return kernel_socket(domain, type, protocol);
  int sv[2];
  if (const int e = make_placeholder(type, sv); e < 0) return e;
  rpc::Descriptor d = desc(rpc::Op::kSocket, 0);
  d.arg0 = static_cast<std::uint64_t>(domain) | (static_cast<std::uint64_t>(base) << 16);
  d.arg1 = static_cast<std::uint64_t>(protocol);
  auto r = p->call(d, sv[1]);
  real().close(sv[1]);
  if (!r || r->result < 0) {
    real().close(sv[0]);
    if (!r) return kernel_socket(domain, type, protocol);  // TOE gone: degrade to the kernel
    return r->result;
  }
  if (static_cast<std::uint64_t>(r->result) >= p->max_sockets()) {
    real().close(sv[0]);
    return -EPROTO;
  }
  return adopt_socket(p, sv[0], static_cast<std::uint32_t>(r->result), type);
}

long op_bind(int fd, const sockaddr* addr, socklen_t len) {
  auto s = resolve(fd);
  if (!s) return real().bind(fd, addr, len) == 0 ? 0 : -errno;
  if (addr == nullptr || len < sizeof(sa_family_t)) return -EINVAL;
  if (config().exclude.excludes(addr, len) && convertible(*s)) {
    if (const long e = convert_to_kernel(*s); e < 0) return e;
    return real().bind(fd, addr, len) == 0 ? 0 : -errno;
  }
  return call_with_buffer(s->p, desc(rpc::Op::kBind, s->ref.id), addr, len);
}

long op_listen(int fd, int backlog) {
  auto s = resolve(fd);
  if (!s) return real().listen(fd, backlog) == 0 ? 0 : -errno;
  rpc::Descriptor d = desc(rpc::Op::kListen, s->ref.id);
  d.arg0 = static_cast<std::uint64_t>(static_cast<std::int64_t>(backlog));
  auto r = s->p->call(d);
  if (!r) return -r.error().code;
  return static_cast<long>(r->result);
}

long op_accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  auto s = resolve(fd);
  if (!s) {
    const int r = real().accept4(fd, addr, len, flags);
    if (r < 0) return -errno;
    fd_table().set_kernel(r);
    return r;
  }
  if ((flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) != 0) return -EINVAL;
  if (s->slot->state.load(std::memory_order_acquire) != rpc::SocketState::kListening) {
    return -EINVAL;
  }
  const std::int64_t timeout = s->local->rcvtimeo_ns.load();
  for (;;) {
    if (s->p->dead()) return -ECONNABORTED;
    if (s->local->rd_shut.load()) return -EINVAL;
    if (s->slot->accept_ready.load(std::memory_order_acquire) == 0) {
      {
        RxLock lk(s->slot->rx_lock, s->p->rx_lock_owner());
        if (s->slot->accept_ready.load(std::memory_order_acquire) == 0 && rearm_readable(*s)) {
          continue;
        }
      }
      if (s->slot->accept_ready.load(std::memory_order_acquire) == 0) {
        if (s->nonblock()) return -EAGAIN;
        const int w = wait_placeholder(*s, POLLIN, timeout);
        if (w < 0) return w;
        continue;
      }
    }
    int sv[2];
    if (const int e = make_placeholder(flags, sv); e < 0) return e;
    rpc::Descriptor d = desc(rpc::Op::kAccept, s->ref.id);
    auto r = s->p->call(d, sv[1]);
    real().close(sv[1]);
    if (!r) {
      real().close(sv[0]);
      return -r.error().code;
    }
    if (r->result == -EAGAIN) {
      real().close(sv[0]);  // another process took it: wait again
      continue;
    }
    if (r->result < 0 || static_cast<std::uint64_t>(r->result) >= s->p->max_sockets()) {
      real().close(sv[0]);
      return r->result < 0 ? static_cast<long>(r->result) : -EPROTO;
    }
    const auto id = static_cast<std::uint32_t>(r->result);
    const int nfd = adopt_socket(s->p, sv[0], id, flags);
    if (nfd < 0) {
      real().close(sv[0]);
      return nfd;
    }
    rpc::SocketSlot* ns = s->p->slot(id);
    copy_address(ns->peer, ns->family, addr, len);
    {
      // Took the last one: A must stop looking readable, or a blocking accept after a poll
      // would block (spurious readiness is only harmless for non-blocking sockets). Left
      // some: A must look readable for them.
      RxLock lk(s->slot->rx_lock, s->p->rx_lock_owner());
      if (s->slot->accept_ready.load(std::memory_order_acquire) == 0) {
        (void)rearm_readable(*s);
      } else {
        keep_readable(*s);
      }
    }
    return nfd;
  }
}

long op_connect(int fd, const sockaddr* addr, socklen_t len) {
  auto s = resolve(fd);
  if (!s) return real().connect(fd, addr, len) == 0 ? 0 : -errno;
  if (addr == nullptr) return -EFAULT;
  if (config().exclude.excludes(addr, len) && convertible(*s)) {
    if (const long e = convert_to_kernel(*s); e < 0) return e;
    return real().connect(fd, addr, len) == 0 ? 0 : -errno;
  }
  rpc::SocketSlot* slot = s->slot;
  if (!s->stream()) {
    return call_with_buffer(s->p, desc(rpc::Op::kConnect, s->ref.id), addr, len);
  }
  const auto st = slot->state.load(std::memory_order_acquire);
  if (st == rpc::SocketState::kConnected) return -EISCONN;
  if (st == rpc::SocketState::kListening) return -EINVAL;
  // A must not look writable until the TOE says the connection is up (or failed): a
  // non-blocking connect fills it now, for the application's poll. A blocking one first spins
  // on the slot and fills A only if it has to sleep, which spares the fill and the TOE's drain
  // (five system calls) on a connection that comes up within the spin.
  bool filled = false;
  if (st != rpc::SocketState::kConnecting) {
    if (s->nonblock()) {
      fill_placeholder(*s);
      filled = true;
    }
    const long r = call_with_buffer(s->p, desc(rpc::Op::kConnect, s->ref.id), addr, len);
    if (r != -EINPROGRESS) {
      if (filled && slot->tx_blocked.load(std::memory_order_seq_cst) != 0) kick(*s, 2);
      return r;
    }
    if (s->nonblock()) return -EINPROGRESS;
  } else if (s->nonblock()) {
    return -EALREADY;
  } else {
    filled = true;  // a non-blocking connect in progress filled A; now the fd is blocking
  }
  // Blocking connect: wait for the TOE to finish it.
  const std::int64_t timeout = s->local->sndtimeo_ns.load();
  for (;;) {
    const auto now = slot->state.load(std::memory_order_acquire);
    if (now == rpc::SocketState::kConnected) return 0;
    if (now != rpc::SocketState::kConnecting) {
      const int e = take_so_error(*s);
      return e != 0 ? -e : -ECONNREFUSED;
    }
    if (const int e = take_so_error(*s); e != 0) return -e;
    if (!filled) {
      if (spin_for_connect(*s, timeout)) continue;
      // Going to sleep on A's POLLOUT: fill it (publishing tx_blocked), re-check (Dekker with
      // the TOE's make_writable). A connection that came up meanwhile may have found tx_blocked
      // clear and not drained: the kick has it drained, so A is writable when we return.
      fill_placeholder(*s);
      filled = true;
      if (slot->state.load(std::memory_order_seq_cst) != rpc::SocketState::kConnecting) {
        kick(*s, 2);
        continue;
      }
    }
    const int w = wait_placeholder(*s, POLLOUT, timeout);
    if (w == -EAGAIN) return -ETIMEDOUT;
    if (w < 0) return w;
  }
}

long op_shutdown(int fd, int how) {
  auto s = resolve(fd);
  if (!s) return real().shutdown(fd, how) == 0 ? 0 : -errno;
  if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) return -EINVAL;
  if (s->stream()) {
    const auto st = s->slot->state.load(std::memory_order_acquire);
    if (st == rpc::SocketState::kOpen || st == rpc::SocketState::kConnecting) return -ENOTCONN;
    if (st == rpc::SocketState::kListening) {
      // Linux: shutting a listener down wakes its blocked accept() callers (EINVAL).
      if (how != SHUT_WR) {
        s->local->rd_shut = true;
        wake_waiters(s->ref.id);
      }
      return 0;
    }
  }
  rpc::Descriptor d = desc(rpc::Op::kShutdown, s->ref.id);
  d.arg0 = static_cast<std::uint64_t>(how);
  auto r = s->p->call(d);
  if (!r) return -r.error().code;
  if (r->result == 0 && how != SHUT_WR) {
    // Linux: a reader blocked on this socket returns 0 (EOF) now, and so does every later
    // recv once the data already received is consumed.
    s->local->rd_shut = true;
    wake_waiters(s->ref.id);
  }
  return static_cast<long>(r->result);
}

long op_close(int fd) {
  // Forget first: a thread blocked on this fd wakes, finds the entry gone, returns EBADF.
  fd_replaced(fd);
  return real().close(fd) == 0 ? 0 : -errno;
}

long op_close_range(unsigned first, unsigned last, int flags) {
  if (real().close_range == nullptr) return -ENOSYS;
  const int r = real().close_range(first, last, flags);
  if (r != 0) return -errno;
#ifdef CLOSE_RANGE_CLOEXEC
  if ((static_cast<unsigned>(flags) & CLOSE_RANGE_CLOEXEC) != 0) return 0;
#endif
  const int hw = fd_table().high_water();
  if (hw == 0) return 0;
  const unsigned end = std::min(last, static_cast<unsigned>(hw - 1));
  for (unsigned fd = first; fd <= end; ++fd) fd_replaced(static_cast<int>(fd));
  return 0;
}

long op_getname(int fd, sockaddr* addr, socklen_t* len, bool peer) {
  auto s = resolve(fd);
  if (!s) {
    const int r = peer ? real().getpeername(fd, addr, len) : real().getsockname(fd, addr, len);
    return r == 0 ? 0 : -errno;
  }
  if (len == nullptr) return -EFAULT;
  const rpc::SlotAddress& a = peer ? s->slot->peer : s->slot->local;
  if (peer) {
    if (a.length == 0) return -ENOTCONN;
    if (s->stream() &&
        s->slot->state.load(std::memory_order_acquire) != rpc::SocketState::kConnected) {
      return -ENOTCONN;
    }
  }
  copy_address(a, s->slot->family, addr, len);
  return 0;
}

long op_getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  auto s = resolve(fd);
  if (!s) return real().getsockopt(fd, level, name, value, len) == 0 ? 0 : -errno;
  if (value == nullptr || len == nullptr) return -EFAULT;
  auto put_int = [&](int v) {
    if (*len < sizeof(int)) return -EINVAL;
    std::memcpy(value, &v, sizeof v);
    *len = sizeof v;
    return 0;
  };
  auto put_time = [&](std::int64_t ns) {
    timeval tv{};
    if (ns > 0) {
      tv.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      tv.tv_usec = static_cast<suseconds_t>((ns % 1'000'000'000) / 1000);
    }
    const socklen_t n = std::min<socklen_t>(*len, sizeof tv);
    std::memcpy(value, &tv, n);
    *len = n;
    return 0;
  };
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_ERROR: {
        int e = take_so_error(*s);
        // The reset is reported once, by SO_ERROR or by the next call, not both (Linux).
        if (e == ECONNRESET) s->local->reset_reported = true;
        if (e == 0) e = s->local->async_error.exchange(0);
        return put_int(e);
      }
      case SO_TYPE:
        return put_int(s->slot->type);
      case SO_DOMAIN:
        return put_int(s->slot->family);
      case SO_PROTOCOL: {
        int proto = s->slot->protocol;
        if (proto == 0) proto = s->stream() ? IPPROTO_TCP : IPPROTO_UDP;
        return put_int(proto);
      }
      case SO_ACCEPTCONN:
        return put_int(s->slot->state.load() == rpc::SocketState::kListening ? 1 : 0);
      case SO_RCVTIMEO:
        return put_time(s->local->rcvtimeo_ns.load());
      case SO_SNDTIMEO:
        return put_time(s->local->sndtimeo_ns.load());
      case SO_SNDBUF:
      case SO_RCVBUF: {
        // Published by the TOE while the socket is kOpen (guest_channel.h); the state is read
        // after the value so a connect that started meanwhile sends us to the TOE.
        const int v =
            (name == SO_SNDBUF ? s->slot->sndbuf : s->slot->rcvbuf).load(std::memory_order_acquire);
        if (v > 0 && s->slot->state.load(std::memory_order_acquire) == rpc::SocketState::kOpen) {
          return put_int(v);
        }
        break;
      }
      default:
        break;
    }
  }
  auto r = s->p->call(option_desc(rpc::Op::kGetsockopt, s->ref.id, level, name));
  if (!r) return -r.error().code;
  if (r->result < 0) return static_cast<long>(r->result);
  unsigned char buf[16];
  std::memcpy(buf, &r->arg0, 8);
  std::memcpy(buf + 8, &r->arg1, 8);
  const auto n = std::min<socklen_t>(
      *len, static_cast<socklen_t>(std::min<std::int64_t>(r->result, sizeof buf)));
  std::memcpy(value, buf, n);
  *len = n;
  return 0;
}

long op_setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  auto s = resolve(fd);
  if (!s) return real().setsockopt(fd, level, name, value, len) == 0 ? 0 : -errno;
  if (value == nullptr && len > 0) return -EFAULT;
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
    if (len < sizeof(timeval)) return -EINVAL;
    timeval tv{};
    std::memcpy(&tv, value, sizeof tv);
    if (tv.tv_usec < 0 || tv.tv_usec >= 1'000'000) return -EDOM;
    std::int64_t ns = std::int64_t{tv.tv_sec} * 1'000'000'000 + std::int64_t{tv.tv_usec} * 1000;
    if (ns <= 0) ns = -1;  // zero means "no timeout"
    (name == SO_RCVTIMEO ? s->local->rcvtimeo_ns : s->local->sndtimeo_ns).store(ns);
    remember_option(*s->local, level, name, value, len);
    return 0;
  }
  if (level == SOL_SOCKET && name == SO_SNDBUF && len >= sizeof(int)) {
    int v = 0;
    std::memcpy(&v, value, sizeof v);
    if (v > 0)
      s->local->credit.set_limit(std::max<std::size_t>(static_cast<std::size_t>(v) * 2, 4096));
  }
  if (postable_option(*s, level, name, len)) {
    // Cannot fail on this socket (an int flag): posted, not waited for. Requests of one
    // process keep their order in its lane, so a later bind/connect/listen sees it set.
    rpc::Descriptor d = option_desc(rpc::Op::kSetsockopt, s->ref.id, level, name);
    d.flags = rpc::kDescFlagNoReply;
    int v = 0;
    std::memcpy(&v, value, sizeof v);
    d.length = sizeof v;
    d.arg1 = static_cast<std::uint32_t>(v);
    if (auto st = s->p->post(d); !st) return -st.error().code;
    remember_option(*s->local, level, name, value, len);
    return 0;
  }
  const long r =
      call_with_buffer(s->p, option_desc(rpc::Op::kSetsockopt, s->ref.id, level, name), value, len);
  if (r == 0) remember_option(*s->local, level, name, value, len);
  return r;
}

}  // namespace tosec::guest
