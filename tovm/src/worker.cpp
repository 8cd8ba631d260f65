#include "tosec/tovm/worker.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "tosec/rpc/notifier.h"
#include "tosec/tovm/kernel_backend.h"

namespace tosec::tovm {

namespace {

constexpr std::uint64_t kStopToken = 0xFFFF'0000'0000'0001ULL;

// min() of two epoll timeouts where -1 means "none".
int min_timeout(int a, int b) {
  if (a < 0) return b;
  if (b < 0) return a;
  return std::min(a, b);
}

rpc::Status epoll_add_in(int epoll, int fd, std::uint64_t token) {
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u64 = token;
  if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &e) != 0) return rpc::errno_error("epoll_ctl");
  return {};
}

// A Unix stream socket listening at `path` (a stale file there is replaced).
rpc::Result<rpc::UniqueFd> listen_unix(const std::string& path, const char* flag) {
  rpc::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return rpc::errno_error(std::string("socket(") + flag + ")");
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    return rpc::Error{ENAMETOOLONG, std::string("--") + flag + " path too long: " + path};
  }
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    return rpc::errno_error("bind(" + path + ")");
  }
  if (::listen(fd.get(), 16) != 0) return rpc::errno_error(std::string("listen(") + flag + ")");
  return fd;
}

}  // namespace

rpc::SpinPolicy toe_spin_policy(std::int64_t max_ns) {
  if (max_ns <= 0) return rpc::SpinPolicy::sleep_only();
  rpc::SpinPolicy p;
  p.spin_ns = max_ns;  // start spinning: a worker that just started is about to be busy
  p.min_spin_ns = 0;
  p.max_spin_ns = max_ns;
  p.adaptive = true;
  p.probe_ns = max_ns;  // a probe must be as long as a useful spin (answers take tens of us)
  p.probe_every = 16;   // idle periods are few and long: probe often, it costs little
  p.hit_rate = true;    // one long gap per connection must not stop the spinning that pays
  return p;
}

rpc::Result<std::unique_ptr<Worker>> Worker::create(const TovmOptions& opts, bool use_signalfd) {
  return create(std::vector<TovmOptions>{opts}, 0, use_signalfd);
}

rpc::Result<std::unique_ptr<Worker>> Worker::create(const std::vector<TovmOptions>& guests,
                                                    unsigned index, bool use_signalfd) {
  if (guests.empty()) return rpc::Error{EINVAL, "a worker needs at least one guest"};
  std::unique_ptr<Worker> w(new Worker(toe_spin_policy(guests.front().spin_ns), index));
  if (auto s = w->init(guests, use_signalfd); !s) return s.error();
  return w;
}

Worker::~Worker() { shutdown(); }

rpc::Status Worker::init(const std::vector<TovmOptions>& guests, bool use_signalfd) {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return rpc::errno_error("epoll_create1");
  stop_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop_fd_.valid()) return rpc::errno_error("eventfd");
  if (auto s = epoll_add_in(epoll_.get(), stop_fd_.get(), kStopToken); !s) return s;
  if (use_signalfd) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    signal_fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signal_fd_.valid()) return rpc::errno_error("signalfd");
    if (auto s = epoll_add_in(epoll_.get(), signal_fd_.get(), make_token(TokenKind::kSignal)); !s) {
      return s;
    }
  }
  for (const auto& g : guests) {
    if (auto s = add_session(g); !s) {
      return rpc::Error{s.code(),
                        guests.size() > 1 ? "guest " + g.guest + ": " + s.message() : s.message()};
    }
  }
  return {};
}

rpc::Status Worker::add_session(const TovmOptions& opts) {
  const auto tag = static_cast<std::uint32_t>(sessions_.size());
  // One backend per session: a guest's sockets and their readiness stay its own.
  auto backend = KernelBackend::create();
  if (!backend) return backend.error();
  auto session = GuestSession::create(opts, epoll_.get(), std::move(*backend), tag);
  if (!session) return session.error();
  (*session)->set_worker_index(index_);
  Served served;
  served.session = std::move(*session);
  if (!opts.status.empty()) {
    auto fd = listen_unix(opts.status, "status");
    if (!fd) return fd.error();
    served.status_listen = std::move(*fd);
    served.status_path = opts.status;
    if (auto s = epoll_add_in(epoll_.get(), served.status_listen.get(),
                              make_token(TokenKind::kStatusListen, 0, tag));
        !s) {
      return s;
    }
  }
  sessions_.push_back(std::move(served));
  return {};
}

void Worker::request_reload() {
  reload_.store(true);
  if (stop_fd_.valid()) {
    const std::uint64_t one = 1;
    (void)::write(stop_fd_.get(), &one, sizeof one);
  }
}

void Worker::reload_topology() {
  for (auto& s : sessions_) s.session->reload_topology();
}

void Worker::request_stop() {
  stop_.store(true);
  if (stop_fd_.valid()) {
    const std::uint64_t one = 1;
    (void)::write(stop_fd_.get(), &one, sizeof one);
  }
}

void Worker::serve_status(Served& s) {
  for (;;) {
    const int fd = ::accept4(s.status_listen.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    rpc::UniqueFd c(fd);
    timeval tv{0, 200'000};  // a client that does not read cannot stall the data path long
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const std::string json = s.session->status_json() + "\n";
    std::size_t off = 0;
    while (off < json.size()) {
      const ssize_t n = ::send(fd, json.data() + off, json.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
  }
}

bool Worker::any_requests() {
  for (auto& s : sessions_) {
    if (s.session->has_requests()) return true;
  }
  return false;
}

void Worker::run_once(int max_timeout_ms) {
  bool progress = false;
  for (auto& s : sessions_) progress = s.session->run_once() || progress;
  epoll_event evs[64];
  if (!progress) {
    // Busy-poll before sleeping (--spin-ns, adaptive): the request rings (a guest's next call)
    // and the epoll set (the peer's answer on a kernel socket, a verdict, ...) without
    // blocking. While we poll, consumer_sleeping stays clear, so guests ring no doorbell
    // either: a request/response exchange then costs the TOE no wake-up at all.
    // With one guest its stack is polled directly (GuestSession::poll_backend): the peer's
    // answer then costs one epoll_wait, not the worker set's plus the backend's. The worker's
    // set (doorbells, sidecars, B hang-ups, verdicts) is polled every 4th time instead.
    int n = 0;
    std::uint32_t polls = 0;
    const bool direct = sessions_.size() == 1;
    const bool caught = spin_.spin([&] {
      if (any_requests()) return true;  // the next run_once takes them
      if ((++polls & 7) != 0) return false;
      if (direct) {
        if (sessions_.front().session->poll_backend()) return true;
        if ((polls & 31) != 0) return false;
      }
      n = ::epoll_wait(epoll_.get(), evs, 64, 0);
      return n > 0;
    });
    if (caught) {
      dispatch(evs, n);
      return;
    }
  }
  int timeout = max_timeout_ms;
  if (progress) {
    timeout = 0;
  } else {
    // Arm every session; one that finds work already waiting cancels the sleep (the others
    // are disarmed again after the zero-timeout epoll_wait below).
    for (auto& s : sessions_) {
      s.armed = s.session->prepare_sleep();
      if (!s.armed) {
        timeout = 0;
        continue;
      }
      if (s.session->has_stalled_output()) timeout = min_timeout(timeout, 1);
      timeout = min_timeout(timeout, s.session->inspection_sleep_ms());  // chain deadlines
      if (s.session->has_zombies()) {  // sock_diag is polled: nothing wakes us when A closes
        timeout = min_timeout(timeout, GuestSession::kZombieCheckMs);
      }
    }
  }
  const int n = ::epoll_wait(epoll_.get(), evs, 64, timeout);
  for (auto& s : sessions_) {
    if (s.armed) s.session->after_wake();
    s.armed = false;
  }
  dispatch(evs, n);
}

void Worker::dispatch(const epoll_event* evs, int n) {
  for (int i = 0; i < n; ++i) {
    const std::uint64_t t = evs[i].data.u64;
    if (t == kStopToken) {
      // request_stop() set stop_ before writing; request_reload() set reload_.
      std::uint64_t v = 0;
      (void)!::read(stop_fd_.get(), &v, sizeof v);
      if (reload_.exchange(false)) reload_topology();
      continue;
    }
    const TokenKind kind = token_kind(t);
    if (kind == TokenKind::kSignal) {
      signalfd_siginfo si;
      while (::read(signal_fd_.get(), &si, sizeof si) == sizeof si) {
        if (si.ssi_signo != SIGHUP) {
          stop_.store(true);
          continue;
        }
        // Each worker reloads its own sessions on its own thread: sessions are never shared,
        // so the swap needs no lock and the data path never waits for it.
        reload_topology();
        if (on_hangup_) on_hangup_();
      }
      continue;
    }
    const std::uint32_t tag = token_session(t);
    if (tag >= sessions_.size()) continue;
    if (kind == TokenKind::kStatusListen) {
      serve_status(sessions_[tag]);
    } else {
      sessions_[tag].session->on_event(t, evs[i].events);
    }
  }
}

rpc::Status Worker::run() {
  while (!stop_.load()) run_once(-1);
  shutdown();
  return {};
}

void Worker::shutdown() {
  for (auto& s : sessions_) {
    if (s.session) s.session->shutdown();
    if (s.status_listen.valid()) {
      s.status_listen.reset();
      ::unlink(s.status_path.c_str());
    }
  }
}

}  // namespace tosec::tovm
