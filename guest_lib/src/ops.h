// Internal operations shared by the C API (tosec.h) and the preload interposers.
//
// Every function returns >= 0 or -errno (never sets errno itself); the C API converts. An fd
// that is not an offloaded socket goes to the real libc function, so callers need not check.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <optional>

#include "fd_table.h"
#include "platform.h"

namespace tosec::guest {

// An fd resolved to an offloaded socket.
struct Sock {
  Platform* p;
  int fd;
  SocketRef ref;
  rpc::SocketSlot* slot;
  SocketLocal* local;
  bool stream() const { return slot->type == SOCK_STREAM; }
  bool nonblock() const { return slot->nonblock.load(std::memory_order_relaxed) != 0; }
};

// nullopt: fd is a kernel fd (or not open). Resolves unknown fds (after exec) by inode.
std::optional<Sock> resolve(int fd);
// Still the same socket behind fd (another thread may have closed or dup2'd over it).
bool still_same(const Sock& s);
// The fd number now refers to something else: wakes threads blocked on its old socket.
void fd_replaced(int fd);

// Blocking: waits for `events` on placeholder A, the fd being closed, a signal or the timeout
// (ns, < 0: none). 0 = re-check (possibly ready), -EAGAIN timeout, -EINTR, -EBADF closed,
// -ECONNRESET the TOE's end of A is gone.
int wait_placeholder(const Sock& s, short events, std::int64_t timeout_ns);
// A blocking connect that has not filled A: spins (connect budget, adaptive) on the slot until
// the TOE publishes the outcome. False: not yet, the caller fills A and sleeps in
// wait_placeholder(POLLOUT).
bool spin_for_connect(const Sock& s, std::int64_t timeout_ns);
// Wakes the threads of this process blocked on socket `id`.
void wake_waiters(std::uint32_t id);
// Records a handler's flags (sigaction/signal interposers) for the EINTR restart decision.
void note_signal_handler(int sig, bool has_handler, bool restart);
// True if a blocking call interrupted by a signal should restart (SA_RESTART semantics).
bool restart_after_signal();
// Installs `act` with the shim's trampoline in front of its handler (so a blocked call knows
// whether the signal that interrupted it has SA_RESTART); `old` reports the user's handler.
int shim_sigaction(int sig, const struct sigaction* act, struct sigaction* old);

// Readiness of A (decision 0004): making A unwritable / re-arming readable.
// Makes A unwritable (junk + sentinel, unless it already is) and then publishes tx_blocked
// with a seq_cst fence: the caller re-checks its condition and kicks (2) if it came meanwhile.
void fill_placeholder(const Sock& s);
// Clears A's readable state after the rx ring (or accept queue) was found empty. Returns true
// if something arrived meanwhile (the caller re-checks; the TOE was kicked to re-signal).
bool rearm_readable(const Sock& s);
// The reverse, after consuming part of the ring (or accept queue): makes sure A looks readable
// for what is left, which a claimed arrival did not signal (guest_channel.h). Under rx_lock.
void keep_readable(const Sock& s);
bool has_rx_work(const Sock& s);  // data, EOF, error or connection to accept
// Clears ECONNRESET in A's sk_err (POLLERR) once a dead stream socket's error was reported.
void clear_placeholder_error(const Sock& s);
int take_so_error(const Sock& s);              // pending SO_ERROR (read-and-clear), 0 if none
void kick(const Sock& s, std::uint64_t what);  // 1 re-signal readable, 2 re-check writable

// Sets up a fresh placeholder pair for kSocket/kAccept: sv[0] = A (flags per `type` bits
// SOCK_NONBLOCK/SOCK_CLOEXEC), sv[1] = B (CLOEXEC). -errno on failure.
int make_placeholder(int type_flags, int sv[2]);
// Registers a socket the TOE created (id from a completion) behind placeholder A.
int adopt_socket(Platform* p, int a, std::uint32_t id, int type_flags);

// TOSEC_EXCLUDE matched: the socket becomes a real kernel socket behind the same fd number
// (options and flags replayed). Only while convertible(): the TOE has done nothing visible
// with it yet (not bound, not connected).
bool convertible(const Sock& s);
long convert_to_kernel(const Sock& s);

long op_socket(int domain, int type, int protocol);
long op_bind(int fd, const sockaddr* addr, socklen_t len);
long op_listen(int fd, int backlog);
long op_accept4(int fd, sockaddr* addr, socklen_t* len, int flags);
long op_connect(int fd, const sockaddr* addr, socklen_t len);
long op_shutdown(int fd, int how);
long op_close(int fd);
long op_close_range(unsigned first, unsigned last, int flags);
long op_getname(int fd, sockaddr* addr, socklen_t* len, bool peer);
long op_getsockopt(int fd, int level, int name, void* value, socklen_t* len);
long op_setsockopt(int fd, int level, int name, const void* value, socklen_t len);
long op_sendmsg(int fd, const msghdr* msg, int flags);
long op_recvmsg(int fd, msghdr* msg, int flags);
long op_sendfile(int out_fd, int in_fd, off_t* offset, std::size_t count);
long op_fcntl(int fd, int cmd, long arg);
long op_ioctl(int fd, unsigned long request, void* arg);
long op_dup(int fd);
long op_dup3(int oldfd, int newfd, int flags, bool is_dup2);

// Thread-local re-entrancy depth: > 0 while the shim itself runs (its own libc calls must
// pass straight through the interposers). Blocking waits drop it while asleep so a signal
// handler's socket calls are shimmed.
int& shim_depth();

}  // namespace tosec::guest
