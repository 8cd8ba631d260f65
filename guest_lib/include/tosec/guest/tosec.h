/* libtosec: the socket-compatible API of TOSEC guests.
 *
 * Every call mirrors its BSD counterpart: same arguments, same return values, errors in errno.
 * A socket created with tosec_socket() is an ordinary fd number (end A of a placeholder
 * socketpair, see docs/decisions/0004-offloaded-sockets.md), so poll/select/epoll, dup, fork
 * and close work on it with the plain libc calls. Ported applications may call these directly;
 * unmodified applications get them through libtosec-preload.so (LD_PRELOAD).
 *
 * Environment (set by `tosec run`):
 *   TOSEC_IVSHMEM_SOCKET  ivshmem server of the guest region (region + doorbells)
 *   TOSEC_TOE_SOCKET      the TOE's sidecar socket (lane handshake, placeholder fds)
 *   TOSEC_OFFLOAD         "all" (default) or "none"
 *   TOSEC_EXCLUDE         comma list of what stays on the kernel: CIDRs ("127.0.0.0/8",
 *                         "::1/128") and ports ("port:53"), checked at bind/connect/sendto
 *   TOSEC_LOG             "error" (default), "info", "debug": diagnostics on stderr
 */
#ifndef TOSEC_GUEST_TOSEC_H
#define TOSEC_GUEST_TOSEC_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if the library could join the platform (region attached, lane granted); else 0 and errno. */
int tosec_available(void);
/* 1 if fd is an offloaded socket of this process, else 0. Never fails. */
int tosec_is_offloaded(int fd);

int tosec_socket(int domain, int type, int protocol);
int tosec_bind(int fd, const struct sockaddr* addr, socklen_t len);
int tosec_listen(int fd, int backlog);
int tosec_accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags);
int tosec_connect(int fd, const struct sockaddr* addr, socklen_t len);
int tosec_shutdown(int fd, int how);
int tosec_close(int fd);
int tosec_getsockname(int fd, struct sockaddr* addr, socklen_t* len);
int tosec_getpeername(int fd, struct sockaddr* addr, socklen_t* len);
int tosec_getsockopt(int fd, int level, int name, void* value, socklen_t* len);
int tosec_setsockopt(int fd, int level, int name, const void* value, socklen_t len);

ssize_t tosec_send(int fd, const void* buf, size_t len, int flags);
ssize_t tosec_sendto(int fd, const void* buf, size_t len, int flags, const struct sockaddr* to,
                     socklen_t tolen);
ssize_t tosec_sendmsg(int fd, const struct msghdr* msg, int flags);
ssize_t tosec_recv(int fd, void* buf, size_t len, int flags);
ssize_t tosec_recvfrom(int fd, void* buf, size_t len, int flags, struct sockaddr* from,
                       socklen_t* fromlen);
ssize_t tosec_recvmsg(int fd, struct msghdr* msg, int flags);
ssize_t tosec_writev(int fd, const struct iovec* iov, int iovcnt);
ssize_t tosec_readv(int fd, const struct iovec* iov, int iovcnt);
ssize_t tosec_sendfile(int out_fd, int in_fd, off_t* offset, size_t count);

/* fcntl/ioctl subset that concerns sockets: F_GETFL/F_SETFL (O_NONBLOCK), FIONBIO, FIONREAD,
 * SIOCOUTQ. Anything else returns -1/ENOTTY so the caller can fall back to the kernel. */
int tosec_fcntl_setfl(int fd, int flags);
int tosec_ioctl(int fd, unsigned long request, void* arg);

/* Process lifecycle hooks (the preload shim calls them; ported applications need not). */
void tosec_atfork_prepare(void);
void tosec_atfork_parent(void);
void tosec_atfork_child(void);

#ifdef __cplusplus
}
#endif

#endif /* TOSEC_GUEST_TOSEC_H */
