// The C API of tosec.h: thin errno wrappers over ops.h.
#include <fcntl.h>

#include <cerrno>
#include <new>

#include "ops.h"
#include "platform.h"
#include "tosec/guest/tosec.h"

using namespace tosec::guest;  // NOLINT: C API shims

namespace {

// No C++ exception may cross the C boundary (std::bad_alloc from the slow paths).
template <class F>
long guarded(F&& f) {
  try {
    return f();
  } catch (...) {
    return -ENOMEM;
  }
}

template <class F>
int ret_int(F&& f) {
  return static_cast<int>(ret_errno(guarded(f)));
}

template <class F>
ssize_t ret_ssize(F&& f) {
  return static_cast<ssize_t>(ret_errno(guarded(f)));
}

}  // namespace

extern "C" {

int tosec_available(void) {
  const int saved = errno;
  Platform* p = nullptr;
  try {
    p = Platform::get();
  } catch (...) {
  }
  if (p == nullptr || p->dead()) {
    errno = ENOTCONN;
    return 0;
  }
  errno = saved;
  return 1;
}

int tosec_is_offloaded(int fd) {
  const int saved = errno;
  bool r = false;
  try {
    r = resolve(fd).has_value();
  } catch (...) {
  }
  errno = saved;
  return r ? 1 : 0;
}

int tosec_socket(int domain, int type, int protocol) {
  return ret_int([&] { return op_socket(domain, type, protocol); });
}
int tosec_bind(int fd, const struct sockaddr* addr, socklen_t len) {
  return ret_int([&] { return op_bind(fd, addr, len); });
}
int tosec_listen(int fd, int backlog) {
  return ret_int([&] { return op_listen(fd, backlog); });
}
int tosec_accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags) {
  return ret_int([&] { return op_accept4(fd, addr, len, flags); });
}
int tosec_connect(int fd, const struct sockaddr* addr, socklen_t len) {
  return ret_int([&] { return op_connect(fd, addr, len); });
}
int tosec_shutdown(int fd, int how) {
  return ret_int([&] { return op_shutdown(fd, how); });
}
int tosec_close(int fd) {
  return ret_int([&] { return op_close(fd); });
}
int tosec_getsockname(int fd, struct sockaddr* addr, socklen_t* len) {
  return ret_int([&] { return op_getname(fd, addr, len, false); });
}
int tosec_getpeername(int fd, struct sockaddr* addr, socklen_t* len) {
  return ret_int([&] { return op_getname(fd, addr, len, true); });
}
int tosec_getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  return ret_int([&] { return op_getsockopt(fd, level, name, value, len); });
}
int tosec_setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  return ret_int([&] { return op_setsockopt(fd, level, name, value, len); });
}

ssize_t tosec_send(int fd, const void* buf, size_t len, int flags) {
  return tosec_sendto(fd, buf, len, flags, nullptr, 0);
}
ssize_t tosec_sendto(int fd, const void* buf, size_t len, int flags, const struct sockaddr* to,
                     socklen_t tolen) {
  iovec v{const_cast<void*>(buf), len};
  msghdr m{};
  m.msg_name = const_cast<sockaddr*>(to);
  m.msg_namelen = to != nullptr ? tolen : 0;
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  return ret_ssize([&] { return op_sendmsg(fd, &m, flags); });
}
ssize_t tosec_sendmsg(int fd, const struct msghdr* msg, int flags) {
  return ret_ssize([&] { return op_sendmsg(fd, msg, flags); });
}
ssize_t tosec_recv(int fd, void* buf, size_t len, int flags) {
  return tosec_recvfrom(fd, buf, len, flags, nullptr, nullptr);
}
ssize_t tosec_recvfrom(int fd, void* buf, size_t len, int flags, struct sockaddr* from,
                       socklen_t* fromlen) {
  iovec v{buf, len};
  msghdr m{};
  m.msg_name = from;
  m.msg_namelen = fromlen != nullptr ? *fromlen : 0;
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  const ssize_t r = ret_ssize([&] { return op_recvmsg(fd, &m, flags); });
  if (r >= 0 && from != nullptr && fromlen != nullptr) *fromlen = m.msg_namelen;
  return r;
}
ssize_t tosec_recvmsg(int fd, struct msghdr* msg, int flags) {
  return ret_ssize([&] { return op_recvmsg(fd, msg, flags); });
}
ssize_t tosec_writev(int fd, const struct iovec* iov, int iovcnt) {
  if (iovcnt < 0) {
    errno = EINVAL;
    return -1;
  }
  msghdr m{};
  m.msg_iov = const_cast<iovec*>(iov);
  m.msg_iovlen = static_cast<size_t>(iovcnt);
  return ret_ssize([&] { return op_sendmsg(fd, &m, 0); });
}
ssize_t tosec_readv(int fd, const struct iovec* iov, int iovcnt) {
  if (iovcnt < 0) {
    errno = EINVAL;
    return -1;
  }
  msghdr m{};
  m.msg_iov = const_cast<iovec*>(iov);
  m.msg_iovlen = static_cast<size_t>(iovcnt);
  return ret_ssize([&] { return op_recvmsg(fd, &m, 0); });
}
ssize_t tosec_sendfile(int out_fd, int in_fd, off_t* offset, size_t count) {
  return ret_ssize([&] { return op_sendfile(out_fd, in_fd, offset, count); });
}

int tosec_fcntl_setfl(int fd, int flags) {
  return ret_int([&] { return op_fcntl(fd, F_SETFL, flags); });
}
int tosec_ioctl(int fd, unsigned long request, void* arg) {
  return ret_int([&] { return op_ioctl(fd, request, arg); });
}

}  // extern "C"
