// Helpers for the socket-semantics conformance suite.
//
// Contract: everything here uses only the plain BSD/POSIX socket API, so the same binary runs on
// the Linux kernel stack (the reference) and unchanged under `tosec run` (offloaded through the
// LD_PRELOAD shim). Nothing may depend on the shim's internals.
//
// Every wait is bounded (poll with a timeout, a deadline loop, or a child alarm()). Helpers that
// can fail use gtest ASSERTs and are called through ASSERT_NO_FATAL_FAILURE(). Readiness may be
// spurious (docs/decisions/0004: the shim may report readable and then return EAGAIN), so the
// data helpers wait with poll() and then use MSG_DONTWAIT and retry on EAGAIN.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sem {

// Bound for any single wait on I/O (ms). Large because offloaded runs on 2 noisy cores can be
// slow; a correct implementation never gets near it, a broken one fails instead of hanging.
inline constexpr int kIoTimeoutMs = 20000;
// Used to assert that something does NOT happen (no wakeup, no datagram). Not a performance
// threshold: a slow implementation only makes these checks weaker, never makes them fail.
inline constexpr int kQuietMs = 100;

// "ECONNRESET (Connection reset by peer)".
std::string err(int e);

// Owning file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

class Deadline {
 public:
  explicit Deadline(int ms)
      : end_(std::chrono::steady_clock::now() + std::chrono::milliseconds(ms)) {}
  bool expired() const { return std::chrono::steady_clock::now() >= end_; }
  // Milliseconds left, at least 0, for poll().
  int left_ms() const;

 private:
  std::chrono::steady_clock::time_point end_;
};

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const { return ss.ss_family; }
  uint16_t port() const;
  std::string str() const;
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
  sockaddr* sa() { return reinterpret_cast<sockaddr*>(&ss); }
  bool same_ip(const Addr& o) const;
};
bool operator==(const Addr& a, const Addr& b);
std::ostream& operator<<(std::ostream& os, const Addr& a);

// 127.0.0.1 or ::1 with the given port.
Addr loopback(int family, uint16_t port = 0);
Addr local_addr(int fd);
Addr peer_addr(int fd);

// A TCP socket bound to loopback port 0 (kernel-chosen) and listening. `type_flags` is or'ed
// into the socket() type (SOCK_NONBLOCK, SOCK_CLOEXEC).
void make_listener(Fd* out, int family = AF_INET, int type_flags = 0, int backlog = 128);
// Blocking connect to `to`.
void connect_to(Fd* out, const Addr& to, int type_flags = 0);
// accept() bounded by kIoTimeoutMs (polls the listener first).
void accept_one(Fd* out, int listener, int flags = 0);

// A connected TCP pair over loopback, both ends in this process, both blocking.
struct Conn {
  Fd client;
  Fd server;
};
void make_conn(Conn* c, int family = AF_INET);

// Returns revents, 0 on timeout. Fails the test on poll() error.
short poll_fd(int fd, short events, int timeout_ms);
void wait_readable(int fd, int timeout_ms = kIoTimeoutMs);
void wait_writable(int fd, int timeout_ms = kIoTimeoutMs);

// Bounded full send / receive (poll + MSG_DONTWAIT, retrying on EAGAIN and short transfers).
void send_all(int fd, const void* buf, size_t n);
void send_str(int fd, const std::string& s);
void recv_exact(int fd, void* buf, size_t n);
std::string recv_str(int fd, size_t n);
// Waits for EOF: the next recv returns 0 (data before EOF is a failure).
void expect_eof(int fd);

// Deterministic pseudo-random data and a checksum over it.
void fill_pattern(uint64_t seed, uint64_t offset, void* buf, size_t n);
uint64_t fnv1a(uint64_t h, const void* buf, size_t n);
inline constexpr uint64_t kFnvInit = 1469598103934665603ULL;

// Thread id of the calling thread, and whether thread `tid` of this process is sleeping in the
// kernel (state S in /proc). Used to deliver an event only after a thread is blocked; waits up to
// timeout_ms for the state, returns false if it never got there.
pid_t this_tid();
bool wait_thread_sleeping(pid_t tid, int timeout_ms = kIoTimeoutMs);

// Runs fn() in its own thread, so the test thread can observe (and unblock) a blocking call.
// If the call is still running when the BlockingCall is destroyed (the test failed, or the
// implementation hung), the destructor records a failure and tries to get the thread out so
// the rest of the suite can run in the same process: first `unblock` (e.g. a shutdown() of the
// socket), then SIGUSR2 (a no-op handler without SA_RESTART, so blocking calls return EINTR)
// repeatedly. If nothing works the join hangs and the watchdog ends the process.
class BlockingCall {
 public:
  explicit BlockingCall(std::function<void()> fn, std::function<void()> unblock = {});
  ~BlockingCall();
  BlockingCall(const BlockingCall&) = delete;
  BlockingCall& operator=(const BlockingCall&) = delete;
  // Kernel thread id of the call's thread (waits for the thread to start).
  pid_t tid();
  // True once the thread is asleep in the kernel (i.e. most likely blocked in the call).
  bool wait_blocked(int timeout_ms = kIoTimeoutMs) {
    return wait_thread_sleeping(tid(), timeout_ms);
  }
  // True if fn() returned within timeout_ms.
  bool wait_done(int timeout_ms = kIoTimeoutMs);
  bool done() const { return done_.load(); }

 private:
  std::function<void()> unblock_;
  std::atomic<pid_t> tid_{0};
  std::atomic<bool> done_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

// Lowest fd number that is not open.
int lowest_free_fd();

// Raises RLIMIT_NOFILE's soft limit to at least `n` (up to the hard limit). Returns the new soft
// limit.
uint64_t raise_nofile(uint64_t n);

// Closes every open AF_INET/AF_INET6 socket not in `keep` (walks /proc/self/fd, asks
// SO_DOMAIN, uses plain close()). Other fds (pipes, and whatever an interposed library keeps
// for itself) are left alone.
void close_inet_sockets_except(const std::vector<int>& keep);

// A forked child. The child runs fn() with alarm() as its last-resort bound and _exit()s with
// the returned code; it never returns into gtest.
class Child {
 public:
  Child() = default;
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // Forks; returns false (and records a failure) if fork fails.
  bool start(const std::function<int()>& fn, unsigned alarm_s = 120);
  // fork() + execv() of this binary in helper mode: argv = {self, "--sem-helper", args...}.
  // The fds in `keep` stay open across the exec (their CLOEXEC flag is cleared in the child).
  bool start_helper(const std::vector<std::string>& args, const std::vector<int>& keep = {});
  // Waits for exit. Returns the exit code, 128+signal if killed, or -1 on timeout (the child is
  // then killed with SIGKILL and reaped).
  int wait(int timeout_ms = kIoTimeoutMs);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// An echo server in a forked child process (a peer that is NOT in the tested process). It
// listens on loopback port 0 (v4 or v6) and echoes every byte back on every connection until
// stop() or destruction. Connections are closed after the client's EOF once everything is
// echoed.
class EchoServerProcess {
 public:
  EchoServerProcess() = default;
  ~EchoServerProcess();
  void start(int family = AF_INET);  // ASSERTs; use with ASSERT_NO_FATAL_FAILURE
  // Stops the child; returns its exit code (0 when every connection behaved).
  int stop();
  const Addr& addr() const { return addr_; }

 private:
  Child child_;
  Fd stop_w_;
  Addr addr_;
  bool running_ = false;
};

// Level-triggered epoll echo loop over non-blocking sockets. Returns when stop_fd is readable or
// at EOF. Used by EchoServerProcess and by the exec'd helper.
int run_echo_server(int listen_fd, int stop_fd);

// Absolute path of this executable (for exec tests), captured in main().
const std::string& self_exe();
void set_self_exe(const char* argv0);

// Watchdog: each test runs with a bound (default 120 s, times SEM_TIMEOUT_SCALE if set); if it
// is exceeded the process prints the test name and exits with status 3, so a hang is reported as
// a failure. Tests that legitimately take longer call extend_watchdog(seconds).
void install_watchdog();
void extend_watchdog(int seconds);

}  // namespace sem

// errno-preserving assertion helpers.
#define SEM_SYS(lhs, expr)                                              \
  do {                                                                  \
    errno = 0;                                                          \
    (lhs) = (expr);                                                     \
    int sem_e_ = errno;                                                 \
    ASSERT_NE((lhs), -1) << #expr << " failed: " << ::sem::err(sem_e_); \
  } while (0)

#define SEM_OK(expr)                                                     \
  do {                                                                   \
    errno = 0;                                                           \
    auto sem_r_ = (expr);                                                \
    int sem_e_ = errno;                                                  \
    ASSERT_NE(sem_r_, -1) << #expr << " failed: " << ::sem::err(sem_e_); \
  } while (0)

#define SEM_EXPECT_ERRNO(expr, want)                                                        \
  do {                                                                                      \
    errno = 0;                                                                              \
    auto sem_r_ = (expr);                                                                   \
    int sem_e_ = errno;                                                                     \
    EXPECT_EQ(sem_r_, -1) << #expr << ": expected -1 with " << ::sem::err(want) << ", got " \
                          << sem_r_;                                                        \
    if (sem_r_ == -1) {                                                                     \
      EXPECT_EQ(sem_e_, (want)) << #expr << ": expected " << ::sem::err(want) << ", got "   \
                                << ::sem::err(sem_e_);                                      \
    }                                                                                       \
  } while (0)
