#include "sock_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace sem {

std::string err(int e) {
  const char* name = strerrorname_np(e);
  std::string s = name ? name : ("errno " + std::to_string(e));
  s += " (";
  s += std::strerror(e);
  s += ")";
  return s;
}

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

int Deadline::left_ms() const {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      end_ - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

uint16_t Addr::port() const {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  }
  return 0;
}

std::string Addr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(port());
  }
  if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(port());
  }
  return "family=" + std::to_string(ss.ss_family) + " len=" + std::to_string(len);
}

bool Addr::same_ip(const Addr& o) const {
  if (family() != o.family()) return false;
  if (family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in*>(&o.ss)->sin_addr.s_addr;
  }
  if (family() == AF_INET6) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr,
                       &reinterpret_cast<const sockaddr_in6*>(&o.ss)->sin6_addr,
                       sizeof(in6_addr)) == 0;
  }
  return false;
}

bool operator==(const Addr& a, const Addr& b) { return a.same_ip(b) && a.port() == b.port(); }

std::ostream& operator<<(std::ostream& os, const Addr& a) { return os << a.str(); }

Addr loopback(int family, uint16_t port) {
  Addr a;
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&a.ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.len = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = in6addr_loopback;
    a.len = sizeof(sockaddr_in6);
  }
  return a;
}

Addr local_addr(int fd) {
  Addr a;
  a.len = sizeof a.ss;
  if (getsockname(fd, a.sa(), &a.len) != 0) a.len = 0;
  return a;
}

Addr peer_addr(int fd) {
  Addr a;
  a.len = sizeof a.ss;
  if (getpeername(fd, a.sa(), &a.len) != 0) a.len = 0;
  return a;
}

void make_listener(Fd* out, int family, int type_flags, int backlog) {
  int fd;
  SEM_SYS(fd, socket(family, SOCK_STREAM | type_flags, 0));
  out->reset(fd);
  Addr a = loopback(family);
  SEM_OK(bind(fd, a.sa(), a.len));
  SEM_OK(listen(fd, backlog));
  ASSERT_NE(local_addr(fd).port(), 0) << "getsockname() after bind(port 0) returned port 0";
}

void connect_to(Fd* out, const Addr& to, int type_flags) {
  int fd;
  SEM_SYS(fd, socket(to.family(), SOCK_STREAM | type_flags, 0));
  out->reset(fd);
  SEM_OK(connect(fd, to.sa(), to.len));
}

void accept_one(Fd* out, int listener, int flags) {
  // The listener is made non-blocking for the call (and restored), so spurious readiness costs
  // a retry instead of a hang; tests of blocking accept() do not use this helper.
  int fl = fcntl(listener, F_GETFL);
  ASSERT_GE(fl, 0) << "fcntl(F_GETFL) on listener fd " << listener << ": " << err(errno);
  if (!(fl & O_NONBLOCK)) fcntl(listener, F_SETFL, fl | O_NONBLOCK);
  struct Restore {
    int fd, fl;
    ~Restore() {
      if (!(fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl);
    }
  } restore{listener, fl};
  Deadline d(kIoTimeoutMs);
  for (;;) {
    int fd = accept4(listener, nullptr, nullptr, flags);
    if (fd >= 0) {
      out->reset(fd);
      return;
    }
    int e = errno;
    ASSERT_TRUE(e == EAGAIN || e == EINTR) << "accept4() failed: " << err(e);
    ASSERT_FALSE(d.expired()) << "no connection could be accepted on listener fd " << listener
                              << " within " << kIoTimeoutMs << " ms";
    poll_fd(listener, POLLIN, d.left_ms());
  }
}

void make_conn(Conn* c, int family) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l, family));
  ASSERT_NO_FATAL_FAILURE(connect_to(&c->client, local_addr(l.get())));
  ASSERT_NO_FATAL_FAILURE(accept_one(&c->server, l.get()));
}

short poll_fd(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  Deadline d(timeout_ms);
  for (;;) {
    int r = poll(&p, 1, d.left_ms());
    if (r >= 0) return r == 0 ? short{0} : p.revents;
    int e = errno;
    if (e == EINTR && !d.expired()) continue;
    ADD_FAILURE() << "poll(fd " << fd << ") failed: " << err(e);
    return 0;
  }
}

void wait_readable(int fd, int timeout_ms) {
  short ev = poll_fd(fd, POLLIN, timeout_ms);
  ASSERT_NE(ev, 0) << "fd " << fd << " did not become readable within " << timeout_ms << " ms";
}

void wait_writable(int fd, int timeout_ms) {
  short ev = poll_fd(fd, POLLOUT, timeout_ms);
  ASSERT_NE(ev, 0) << "fd " << fd << " did not become writable within " << timeout_ms << " ms";
}

void send_all(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  Deadline d(kIoTimeoutMs);
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r > 0) {
      p += r;
      n -= static_cast<size_t>(r);
      continue;
    }
    int e = errno;
    ASSERT_TRUE(r < 0 && (e == EAGAIN || e == EINTR))
        << "send(fd " << fd << ", " << n << " bytes) returned " << r << ": " << err(e);
    ASSERT_FALSE(d.expired()) << "send(fd " << fd << ") made no progress for " << kIoTimeoutMs
                              << " ms with " << n << " bytes left";
    poll_fd(fd, POLLOUT, d.left_ms());
  }
}

void send_str(int fd, const std::string& s) { send_all(fd, s.data(), s.size()); }

void recv_exact(int fd, void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  size_t got = 0;
  Deadline d(kIoTimeoutMs);
  while (got < n) {
    ssize_t r = recv(fd, p + got, n - got, MSG_DONTWAIT);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    int e = errno;
    ASSERT_NE(r, 0) << "recv(fd " << fd << "): unexpected EOF after " << got << " of " << n
                    << " bytes";
    ASSERT_TRUE(e == EAGAIN || e == EINTR)
        << "recv(fd " << fd << ") failed after " << got << " of " << n << " bytes: " << err(e);
    ASSERT_FALSE(d.expired()) << "recv(fd " << fd << "): only " << got << " of " << n
                              << " bytes arrived within " << kIoTimeoutMs << " ms";
    poll_fd(fd, POLLIN, d.left_ms());
  }
}

std::string recv_str(int fd, size_t n) {
  std::string s(n, '\0');
  recv_exact(fd, s.data(), n);
  return s;
}

void expect_eof(int fd) {
  Deadline d(kIoTimeoutMs);
  for (;;) {
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    if (r == 0) return;
    int e = errno;
    ASSERT_LT(r, 0) << "expected EOF on fd " << fd << " but received data";
    ASSERT_TRUE(e == EAGAIN || e == EINTR) << "expected EOF on fd " << fd << ", got " << err(e);
    ASSERT_FALSE(d.expired()) << "no EOF on fd " << fd << " within " << kIoTimeoutMs << " ms";
    poll_fd(fd, POLLIN, d.left_ms());
  }
}

void fill_pattern(uint64_t seed, uint64_t offset, void* buf, size_t n) {
  // Byte i of the stream is a function of (seed, i), so any chunking reproduces it.
  auto* p = static_cast<unsigned char*>(buf);
  for (size_t i = 0; i < n; ++i) {
    uint64_t x = seed ^ ((offset + i) * 0x9E3779B97F4A7C15ULL);
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 32;
    p[i] = static_cast<unsigned char>(x);
  }
}

uint64_t fnv1a(uint64_t h, const void* buf, size_t n) {
  const auto* p = static_cast<const unsigned char*>(buf);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

pid_t this_tid() { return gettid(); }

bool wait_thread_sleeping(pid_t tid, int timeout_ms) {
  std::string path = "/proc/self/task/" + std::to_string(tid) + "/stat";
  Deadline d(timeout_ms);
  while (!d.expired()) {
    std::ifstream f(path);
    std::string line;
    if (!std::getline(f, line)) return false;  // thread gone
    // pid (comm) S ...: comm may contain spaces/parens, so take the char after the last ')'.
    auto pos = line.rfind(')');
    if (pos != std::string::npos && pos + 2 < line.size() && line[pos + 2] == 'S') return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

BlockingCall::BlockingCall(std::function<void()> fn, std::function<void()> unblock)
    : unblock_(std::move(unblock)), thread_([this, f = std::move(fn)] {
        tid_.store(gettid());
        f();
        {
          std::lock_guard<std::mutex> g(mu_);
          done_.store(true);
        }
        cv_.notify_all();
      }) {}

BlockingCall::~BlockingCall() {
  if (!thread_.joinable()) return;
  if (!done_.load()) {
    ADD_FAILURE() << "a blocking call was still blocked at the end of the test; unblocking it "
                     "(shutdown/signals) so the suite can go on";
    if (unblock_) {
      unblock_();
      wait_done(5000);
    }
    Deadline d(10000);
    while (!done_.load() && !d.expired()) {
      tgkill(getpid(), tid_.load(), SIGUSR2);
      wait_done(20);
    }
  }
  thread_.join();
}

pid_t BlockingCall::tid() {
  Deadline d(kIoTimeoutMs);
  while (tid_.load() == 0 && !d.expired()) std::this_thread::yield();
  return tid_.load();
}

bool BlockingCall::wait_done(int timeout_ms) {
  std::unique_lock<std::mutex> lk(mu_);
  return cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return done_.load(); });
}

int lowest_free_fd() {
  for (int fd = 0;; ++fd) {
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) return fd;
  }
}

uint64_t raise_nofile(uint64_t n) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < n) {
    rl.rlim_cur = n < rl.rlim_max ? n : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

void close_inet_sockets_except(const std::vector<int>& keep) {
  std::vector<int> fds;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      int fd = std::atoi(e->d_name);
      if (fd != dirfd(d)) fds.push_back(fd);
    }
    closedir(d);
  }
  for (int fd : fds) {
    bool k = false;
    for (int x : keep) k = k || x == fd;
    int domain = 0;
    socklen_t len = sizeof domain;
    if (k || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) continue;
    if (domain == AF_INET || domain == AF_INET6) close(fd);
  }
}

// ---- child processes ----

Child::~Child() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool Child::start(const std::function<int()>& fn, unsigned alarm_s) {
  std::fflush(nullptr);
  pid_t p = fork();
  if (p < 0) {
    ADD_FAILURE() << "fork() failed: " << err(errno);
    return false;
  }
  if (p == 0) {
    signal(SIGALRM, SIG_DFL);
    alarm(alarm_s);
    int rc = fn();
    std::fflush(nullptr);
    _exit(rc);
  }
  pid_ = p;
  return true;
}

bool Child::start_helper(const std::vector<std::string>& args, const std::vector<int>& keep) {
  std::vector<std::string> argv_s{self_exe(), "--sem-helper"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  pid_t p = fork();
  if (p < 0) {
    ADD_FAILURE() << "fork() failed: " << err(errno);
    return false;
  }
  if (p == 0) {
    for (int fd : keep) {
      int fl = fcntl(fd, F_GETFD);
      if (fl >= 0) fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
    }
    execv(argv[0], argv.data());
    std::fprintf(stderr, "execv(%s) failed: %s\n", argv[0], err(errno).c_str());
    _exit(127);
  }
  pid_ = p;
  return true;
}

int Child::wait(int timeout_ms) {
  if (pid_ <= 0) return -1;
  Deadline d(timeout_ms);
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(st)) return WEXITSTATUS(st);
      if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
      return -1;
    }
    if (r < 0 && errno != EINTR) {
      pid_ = -1;
      return -1;
    }
    if (d.expired()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// ---- echo server ----

int run_echo_server(int listen_fd, int stop_fd) {
  struct EchoConn {
    int fd;
    std::vector<char> pending;
    size_t off = 0;
    bool eof = false;
  };
  int flags = fcntl(listen_fd, F_GETFL);
  fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return 10;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) != 0) return 11;
  ev.data.fd = stop_fd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &ev) != 0) return 12;
  std::map<int, EchoConn> conns;
  std::vector<char> buf(256 * 1024);
  int rc = 0;
  auto drop = [&](int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns.erase(fd);
  };
  auto set_mask = [&](int fd, uint32_t mask) {
    epoll_event e{};
    e.events = mask;
    e.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
  };
  // Writes pending data; returns false if the connection was dropped.
  auto flush = [&](EchoConn& c) -> bool {
    while (c.off < c.pending.size()) {
      ssize_t w = send(c.fd, c.pending.data() + c.off, c.pending.size() - c.off,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) {
        c.off += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && (errno == EAGAIN || errno == EINTR)) return true;
      drop(c.fd);
      return false;
    }
    c.pending.clear();
    c.off = 0;
    return true;
  };
  epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(ep, evs, 64, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      rc = 13;
      break;
    }
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == stop_fd) {
        for (auto& [cfd, c] : conns) close(cfd);
        close(ep);
        return rc;
      }
      if (fd == listen_fd) {
        for (;;) {
          int cfd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK);
          if (cfd < 0) break;
          conns[cfd] = EchoConn{cfd, {}, 0, false};
          epoll_event e{};
          e.events = EPOLLIN;
          e.data.fd = cfd;
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &e);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      EchoConn& c = it->second;
      if (!c.pending.empty()) {
        if (!flush(c)) continue;
        if (!c.pending.empty()) continue;
        if (c.eof) {
          drop(fd);
          continue;
        }
        set_mask(fd, EPOLLIN);
        continue;
      }
      ssize_t r = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (r == 0) {
        drop(fd);
        continue;
      }
      if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        drop(fd);
        continue;
      }
      c.pending.assign(buf.data(), buf.data() + r);
      c.off = 0;
      if (!flush(c)) continue;
      if (!c.pending.empty()) set_mask(fd, EPOLLOUT);
    }
  }
  close(ep);
  return rc;
}

void EchoServerProcess::start(int family) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l, family, 0, 4096));
  addr_ = local_addr(l.get());
  int p[2];
  SEM_OK(pipe2(p, O_CLOEXEC));
  Fd r(p[0]);
  stop_w_.reset(p[1]);
  int lfd = l.get();
  int rfd = r.get();
  int wfd = stop_w_.get();
  ASSERT_TRUE(child_.start(
      [lfd, rfd, wfd] {
        close(wfd);  // or the stop pipe never reaches EOF
        // Keep only what the server needs: inherited copies of the test's other sockets would
        // otherwise hold them open (refcounted close) and hide EOFs from the test.
        close_inet_sockets_except({lfd});
        return run_echo_server(lfd, rfd);
      },
      600));
  running_ = true;
  // The parent's copies of the listener and the pipe's read end close here; the child's keep
  // the listener alive (refcounted close across fork).
}

int EchoServerProcess::stop() {
  if (!running_) return 0;
  running_ = false;
  stop_w_.reset();
  return child_.wait();
}

EchoServerProcess::~EchoServerProcess() { stop(); }

// ---- self path ----

namespace {
std::string& self_path() {
  static std::string p;
  return p;
}
}  // namespace

const std::string& self_exe() { return self_path(); }

void set_self_exe(const char* argv0) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    self_path().assign(buf, static_cast<size_t>(n));
  } else {
    self_path() = argv0;
  }
}

// ---- watchdog ----

namespace {

struct WatchdogState {
  std::mutex mu;
  std::condition_variable cv;
  std::string test;
  std::chrono::steady_clock::time_point deadline{};
  bool armed = false;
  int seconds = 0;
};

WatchdogState& wd() {
  static auto* s = new WatchdogState;  // leaked: the thread outlives static destruction
  return *s;
}

int timeout_scaled(int seconds) {
  const char* s = std::getenv("SEM_TIMEOUT_SCALE");
  double scale = s ? std::atof(s) : 1.0;
  if (scale <= 0) scale = 1.0;
  return static_cast<int>(seconds * scale);
}

void arm(const std::string& name, int seconds) {
  auto& s = wd();
  std::lock_guard<std::mutex> g(s.mu);
  s.test = name;
  s.seconds = timeout_scaled(seconds);
  s.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(s.seconds);
  s.armed = true;
  s.cv.notify_all();
}

void disarm() {
  auto& s = wd();
  std::lock_guard<std::mutex> g(s.mu);
  s.armed = false;
  s.cv.notify_all();
}

class WatchdogListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo& info) override {
    arm(std::string(info.test_suite_name()) + "." + info.name(), 120);
  }
  void OnTestEnd(const ::testing::TestInfo&) override { disarm(); }
};

}  // namespace

void extend_watchdog(int seconds) {
  auto& s = wd();
  std::string name;
  {
    std::lock_guard<std::mutex> g(s.mu);
    name = s.test;
  }
  arm(name, seconds);
}

namespace {
void on_sigusr2(int) {}
}  // namespace

void install_watchdog() {
  // SIGUSR2 is reserved for BlockingCall's last-resort unblocking: no SA_RESTART, so a blocked
  // recv/send/accept/poll returns EINTR.
  struct sigaction sa {};
  sa.sa_handler = on_sigusr2;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, nullptr);
  ::testing::UnitTest::GetInstance()->listeners().Append(new WatchdogListener);
  std::thread([] {
    auto& s = wd();
    std::unique_lock<std::mutex> lk(s.mu);
    for (;;) {
      if (!s.armed) {
        s.cv.wait(lk);
        continue;
      }
      auto dl = s.deadline;
      if (s.cv.wait_until(lk, dl) == std::cv_status::timeout && s.armed && s.deadline == dl) {
        std::fprintf(stderr,
                     "\n[  WATCHDOG ] %s did not finish within %d s: the implementation hung "
                     "(a blocking call never returned). Exiting with status 3.\n",
                     s.test.c_str(), s.seconds);
        std::fflush(nullptr);
        _exit(3);
      }
    }
  }).detach();
}

}  // namespace sem
