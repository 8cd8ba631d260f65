// libtosec-preload.so: the LD_PRELOAD interposers.
//
// Each interposer: (1) if the shim itself is running on this thread (shim_depth() > 0: its
// own libc calls, e.g. from the ivshmem client) pass straight to the real function; (2) else
// run the shim operation, which itself passes non-offloaded fds to the real function. No C++
// exception escapes (guarded() turns one into ENOMEM). poll/select/epoll are deliberately NOT
// interposed: the kernel evaluates them on placeholder A (decision 0004).
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include "ops.h"
#include "real_calls.h"

using namespace tosec::guest;  // NOLINT

namespace {

struct Depth {
  Depth() { ++shim_depth(); }
  ~Depth() { --shim_depth(); }
  Depth(const Depth&) = delete;
  Depth& operator=(const Depth&) = delete;
};

template <class F>
long run(F&& f) {
  Depth d;
  try {
    return f();
  } catch (...) {
    return -ENOMEM;
  }
}

inline bool inside() { return shim_depth() > 0; }

template <class T>
T out(long r) {
  return static_cast<T>(ret_errno(r));
}

[[noreturn]] void chk_fail() {
  // The fortify check failed: behave like glibc's __chk_fail.
  static const char m[] = "*** buffer overflow detected ***: terminated\n";
  (void)!real().write(2, m, sizeof m - 1);
  abort();
}

bool is_offloaded_fd(int fd) { return fd_table().get(fd).kind == FdTable::Kind::kOffloaded; }

}  // namespace

#define TOSEC_EXPORT extern "C" __attribute__((visibility("default")))

TOSEC_EXPORT int socket(int domain, int type, int protocol) {
  if (inside()) return real().socket(domain, type, protocol);
  return out<int>(run([&] { return op_socket(domain, type, protocol); }));
}

TOSEC_EXPORT int socketpair(int domain, int type, int protocol, int sv[2]) {
  const int r = real().socketpair(domain, type, protocol, sv);
  if (r == 0 && !inside()) {
    fd_table().set_kernel(sv[0]);
    fd_table().set_kernel(sv[1]);
  }
  return r;
}

TOSEC_EXPORT int bind(int fd, const sockaddr* addr, socklen_t len) {
  if (inside()) return real().bind(fd, addr, len);
  return out<int>(run([&] { return op_bind(fd, addr, len); }));
}

TOSEC_EXPORT int listen(int fd, int backlog) {
  if (inside()) return real().listen(fd, backlog);
  return out<int>(run([&] { return op_listen(fd, backlog); }));
}

TOSEC_EXPORT int accept(int fd, sockaddr* addr, socklen_t* len) {
  if (inside()) return real().accept(fd, addr, len);
  return out<int>(run([&] { return op_accept4(fd, addr, len, 0); }));
}

TOSEC_EXPORT int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (inside()) return real().accept4(fd, addr, len, flags);
  return out<int>(run([&] { return op_accept4(fd, addr, len, flags); }));
}

TOSEC_EXPORT int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (inside()) return real().connect(fd, addr, len);
  return out<int>(run([&] { return op_connect(fd, addr, len); }));
}

TOSEC_EXPORT int shutdown(int fd, int how) {
  if (inside()) return real().shutdown(fd, how);
  return out<int>(run([&] { return op_shutdown(fd, how); }));
}

TOSEC_EXPORT int close(int fd) {
  if (inside()) return real().close(fd);
  return out<int>(run([&] { return op_close(fd); }));
}

TOSEC_EXPORT int close_range(unsigned first, unsigned last, int flags) {
  if (inside()) return real().close_range(first, last, flags);
  return out<int>(run([&] { return op_close_range(first, last, flags); }));
}

TOSEC_EXPORT void closefrom(int lowfd) {
  if (inside() || lowfd < 0) {
    real().closefrom(lowfd);
    return;
  }
  const long r = run([&] { return op_close_range(static_cast<unsigned>(lowfd), ~0U, 0); });
  if (r < 0) real().closefrom(lowfd);  // close_range unsupported: glibc falls back itself
}

TOSEC_EXPORT int getsockname(int fd, sockaddr* addr, socklen_t* len) {
  if (inside()) return real().getsockname(fd, addr, len);
  return out<int>(run([&] { return op_getname(fd, addr, len, false); }));
}

TOSEC_EXPORT int getpeername(int fd, sockaddr* addr, socklen_t* len) {
  if (inside()) return real().getpeername(fd, addr, len);
  return out<int>(run([&] { return op_getname(fd, addr, len, true); }));
}

TOSEC_EXPORT int getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  if (inside()) return real().getsockopt(fd, level, name, value, len);
  return out<int>(run([&] { return op_getsockopt(fd, level, name, value, len); }));
}

TOSEC_EXPORT int setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  if (inside()) return real().setsockopt(fd, level, name, value, len);
  return out<int>(run([&] { return op_setsockopt(fd, level, name, value, len); }));
}

// ---- data ----

namespace {
long recv_one(int fd, void* buf, size_t len, int flags, sockaddr* from, socklen_t* fromlen) {
  iovec v{buf, len};
  msghdr m{};
  m.msg_name = from;
  m.msg_namelen = fromlen != nullptr ? *fromlen : 0;
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  const long r = op_recvmsg(fd, &m, flags);
  if (r >= 0 && from != nullptr && fromlen != nullptr) *fromlen = m.msg_namelen;
  return r;
}
long send_one(int fd, const void* buf, size_t len, int flags, const sockaddr* to, socklen_t tolen) {
  iovec v{const_cast<void*>(buf), len};
  msghdr m{};
  m.msg_name = const_cast<sockaddr*>(to);
  m.msg_namelen = to != nullptr ? tolen : 0;
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  return op_sendmsg(fd, &m, flags);
}
long iov_msg(int fd, const iovec* iov, int iovcnt, bool send) {
  if (iovcnt < 0 || iovcnt > IOV_MAX) return -EINVAL;
  msghdr m{};
  m.msg_iov = const_cast<iovec*>(iov);
  m.msg_iovlen = static_cast<size_t>(iovcnt);
  return send ? op_sendmsg(fd, &m, 0) : op_recvmsg(fd, &m, 0);
}
}  // namespace

TOSEC_EXPORT ssize_t read(int fd, void* buf, size_t len) {
  if (inside()) return real().read(fd, buf, len);
  if (fd_table().get(fd).kind == FdTable::Kind::kKernel) return real().read(fd, buf, len);
  return out<ssize_t>(run([&]() -> long {
    if (!resolve(fd)) {
      const ssize_t r = real().read(fd, buf, len);
      return r >= 0 ? r : -errno;
    }
    return recv_one(fd, buf, len, 0, nullptr, nullptr);
  }));
}

TOSEC_EXPORT ssize_t __read_chk(int fd, void* buf, size_t len, size_t buflen) {
  if (len > buflen) chk_fail();
  return read(fd, buf, len);
}

TOSEC_EXPORT ssize_t readv(int fd, const iovec* iov, int iovcnt) {
  if (inside() || fd_table().get(fd).kind == FdTable::Kind::kKernel) {
    return real().readv(fd, iov, iovcnt);
  }
  return out<ssize_t>(run([&]() -> long {
    if (!resolve(fd)) {
      const ssize_t r = real().readv(fd, iov, iovcnt);
      return r >= 0 ? r : -errno;
    }
    return iov_msg(fd, iov, iovcnt, false);
  }));
}

TOSEC_EXPORT ssize_t recv(int fd, void* buf, size_t len, int flags) {
  if (inside()) return real().recv(fd, buf, len, flags);
  return out<ssize_t>(run([&] { return recv_one(fd, buf, len, flags, nullptr, nullptr); }));
}

TOSEC_EXPORT ssize_t __recv_chk(int fd, void* buf, size_t len, size_t buflen, int flags) {
  if (len > buflen) chk_fail();
  return recv(fd, buf, len, flags);
}

TOSEC_EXPORT ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* from,
                              socklen_t* fromlen) {
  if (inside()) return real().recvfrom(fd, buf, len, flags, from, fromlen);
  return out<ssize_t>(run([&] { return recv_one(fd, buf, len, flags, from, fromlen); }));
}

TOSEC_EXPORT ssize_t __recvfrom_chk(int fd, void* buf, size_t len, size_t buflen, int flags,
                                    sockaddr* from, socklen_t* fromlen) {
  if (len > buflen) chk_fail();
  return recvfrom(fd, buf, len, flags, from, fromlen);
}

TOSEC_EXPORT ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  if (inside()) return real().recvmsg(fd, msg, flags);
  return out<ssize_t>(run([&] { return op_recvmsg(fd, msg, flags); }));
}

TOSEC_EXPORT int recvmmsg(int fd, mmsghdr* vec, unsigned vlen, int flags, timespec* timeout) {
  if (inside()) return real().recvmmsg(fd, vec, vlen, flags, timeout);
  return out<int>(run([&]() -> long {
    if (!resolve(fd)) {
      const int r = real().recvmmsg(fd, vec, vlen, flags, timeout);
      return r >= 0 ? r : -errno;
    }
    // `timeout` is not supported on offloaded sockets (documented): the first message waits
    // as recvmsg would, later ones are taken only if already there.
    unsigned n = 0;
    int f = flags & ~MSG_WAITFORONE;
    for (; n < vlen; ++n) {
      const long r = op_recvmsg(fd, &vec[n].msg_hdr, f);
      if (r < 0) {
        if (n > 0) break;
        return r;
      }
      vec[n].msg_len = static_cast<unsigned>(r);
      f |= MSG_DONTWAIT;
    }
    return n;
  }));
}

TOSEC_EXPORT ssize_t write(int fd, const void* buf, size_t len) {
  if (inside()) return real().write(fd, buf, len);
  if (fd_table().get(fd).kind == FdTable::Kind::kKernel) return real().write(fd, buf, len);
  return out<ssize_t>(run([&]() -> long {
    if (!resolve(fd)) {
      const ssize_t r = real().write(fd, buf, len);
      return r >= 0 ? r : -errno;
    }
    return send_one(fd, buf, len, 0, nullptr, 0);
  }));
}

TOSEC_EXPORT ssize_t writev(int fd, const iovec* iov, int iovcnt) {
  if (inside() || fd_table().get(fd).kind == FdTable::Kind::kKernel) {
    return real().writev(fd, iov, iovcnt);
  }
  return out<ssize_t>(run([&]() -> long {
    if (!resolve(fd)) {
      const ssize_t r = real().writev(fd, iov, iovcnt);
      return r >= 0 ? r : -errno;
    }
    return iov_msg(fd, iov, iovcnt, true);
  }));
}

TOSEC_EXPORT ssize_t send(int fd, const void* buf, size_t len, int flags) {
  if (inside()) return real().send(fd, buf, len, flags);
  return out<ssize_t>(run([&] { return send_one(fd, buf, len, flags, nullptr, 0); }));
}

TOSEC_EXPORT ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* to,
                            socklen_t tolen) {
  if (inside()) return real().sendto(fd, buf, len, flags, to, tolen);
  return out<ssize_t>(run([&] { return send_one(fd, buf, len, flags, to, tolen); }));
}

TOSEC_EXPORT ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  if (inside()) return real().sendmsg(fd, msg, flags);
  return out<ssize_t>(run([&] { return op_sendmsg(fd, msg, flags); }));
}

TOSEC_EXPORT int sendmmsg(int fd, mmsghdr* vec, unsigned vlen, int flags) {
  if (inside()) return real().sendmmsg(fd, vec, vlen, flags);
  return out<int>(run([&]() -> long {
    if (!resolve(fd)) {
      const int r = real().sendmmsg(fd, vec, vlen, flags);
      return r >= 0 ? r : -errno;
    }
    unsigned n = 0;
    for (; n < vlen; ++n) {
      const long r = op_sendmsg(fd, &vec[n].msg_hdr, flags);
      if (r < 0) {
        if (n > 0) break;
        return r;
      }
      vec[n].msg_len = static_cast<unsigned>(r);
    }
    return n;
  }));
}

TOSEC_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count) {
  if (inside()) return real().sendfile(out_fd, in_fd, offset, count);
  return out<ssize_t>(run([&] { return op_sendfile(out_fd, in_fd, offset, count); }));
}

TOSEC_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off_t* offset, size_t count) {
  return sendfile(out_fd, in_fd, offset, count);
}

TOSEC_EXPORT ssize_t pread(int fd, void* buf, size_t len, off_t off) {
  if (!inside() && is_offloaded_fd(fd)) {
    errno = ESPIPE;
    return -1;
  }
  return real().pread(fd, buf, len, off);
}
TOSEC_EXPORT ssize_t pread64(int fd, void* buf, size_t len, off_t off) {
  return pread(fd, buf, len, off);
}
TOSEC_EXPORT ssize_t pwrite(int fd, const void* buf, size_t len, off_t off) {
  if (!inside() && is_offloaded_fd(fd)) {
    errno = ESPIPE;
    return -1;
  }
  return real().pwrite(fd, buf, len, off);
}
TOSEC_EXPORT ssize_t pwrite64(int fd, const void* buf, size_t len, off_t off) {
  return pwrite(fd, buf, len, off);
}

// ---- control ----

TOSEC_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  const long arg = va_arg(ap, long);  // glibc reads the optional argument the same way
  va_end(ap);
  if (inside()) return real().fcntl(fd, cmd, arg);
  switch (cmd) {
    case F_SETFL:
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
      return out<int>(run([&] { return op_fcntl(fd, cmd, arg); }));
    default:
      return real().fcntl(fd, cmd, arg);
  }
}

TOSEC_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  const long arg = va_arg(ap, long);
  va_end(ap);
  return fcntl(fd, cmd, arg);
}

TOSEC_EXPORT int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (inside() || fd_table().get(fd).kind == FdTable::Kind::kKernel) {
    return real().ioctl(fd, request, arg);
  }
  return out<int>(run([&] { return op_ioctl(fd, request, arg); }));
}

TOSEC_EXPORT int dup(int fd) {
  if (inside()) return real().dup(fd);
  return out<int>(run([&] { return op_dup(fd); }));
}

TOSEC_EXPORT int dup2(int oldfd, int newfd) {
  if (inside()) return real().dup2(oldfd, newfd);
  return out<int>(run([&] { return op_dup3(oldfd, newfd, 0, true); }));
}

TOSEC_EXPORT int dup3(int oldfd, int newfd, int flags) {
  if (inside()) return real().dup3(oldfd, newfd, flags);
  return out<int>(run([&] { return op_dup3(oldfd, newfd, flags, false); }));
}

// ---- processes and signals ----

TOSEC_EXPORT pid_t fork(void) {
  // The atfork handlers (fork_exec.cpp) do the work; the depth guard keeps the child's
  // clean-up calls on the real functions.
  Depth d;
  return real().fork();
}

// vfork's child shares our memory: touching shim state there would corrupt the parent, so it
// becomes a fork (as VMA and Onload do).
TOSEC_EXPORT pid_t vfork(void) { return fork(); }

TOSEC_EXPORT int sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  return shim_sigaction(sig, act, old);
}

// glibc's signal() has BSD semantics (SA_RESTART); it calls an internal sigaction we cannot
// see, so it is rebuilt on ours.
TOSEC_EXPORT sighandler_t signal(int sig, sighandler_t handler) {
  struct sigaction act {};
  struct sigaction old {};
  act.sa_handler = handler;
  sigemptyset(&act.sa_mask);
  if (sig > 0 && sig < 65) sigaddset(&act.sa_mask, sig);
  act.sa_flags = SA_RESTART;
  if (shim_sigaction(sig, &act, &old) != 0) return SIG_ERR;
  return old.sa_handler;
}
