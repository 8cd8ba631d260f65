#include "tosec/tovm/worker.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "tosec/rpc/notifier.h"
#include "tosec/tovm/kernel_backend.h"

namespace tosec::tovm {

namespace {
constexpr std::uint64_t kStopToken = 0xFFFF'0000'0000'0001ULL;
}

rpc::Result<std::unique_ptr<Worker>> Worker::create(const TovmOptions& opts, bool use_signalfd) {
  std::unique_ptr<Worker> w(new Worker(opts));
  if (auto s = w->init(use_signalfd); !s) return s.error();
  return w;
}

Worker::~Worker() { shutdown(); }

rpc::Status Worker::init(bool use_signalfd) {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return rpc::errno_error("epoll_create1");
  auto add = [&](int fd, std::uint64_t token) -> rpc::Status {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = token;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &e) != 0) return rpc::errno_error("epoll_ctl");
    return {};
  };
  stop_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop_fd_.valid()) return rpc::errno_error("eventfd");
  if (auto s = add(stop_fd_.get(), kStopToken); !s) return s;
  if (use_signalfd) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    signal_fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signal_fd_.valid()) return rpc::errno_error("signalfd");
    if (auto s = add(signal_fd_.get(), make_token(TokenKind::kSignal)); !s) return s;
  }
  auto backend = KernelBackend::create();
  if (!backend) return backend.error();
  auto session = GuestSession::create(opts_, epoll_.get(), std::move(*backend));
  if (!session) return session.error();
  session_ = std::move(*session);
  if (!opts_.status.empty()) {
    status_listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!status_listen_.valid()) return rpc::errno_error("socket(status)");
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (opts_.status.size() >= sizeof sun.sun_path) {
      return rpc::Error{ENAMETOOLONG, "--status path too long: " + opts_.status};
    }
    std::memcpy(sun.sun_path, opts_.status.c_str(), opts_.status.size() + 1);
    ::unlink(opts_.status.c_str());
    if (::bind(status_listen_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
      return rpc::errno_error("bind(" + opts_.status + ")");
    }
    if (::listen(status_listen_.get(), 16) != 0) return rpc::errno_error("listen(status)");
    if (auto s = add(status_listen_.get(), make_token(TokenKind::kStatusListen)); !s) return s;
  }
  return {};
}

void Worker::request_stop() {
  stop_.store(true);
  if (stop_fd_.valid()) {
    const std::uint64_t one = 1;
    (void)::write(stop_fd_.get(), &one, sizeof one);
  }
}

void Worker::serve_status() {
  for (;;) {
    const int fd = ::accept4(status_listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    rpc::UniqueFd c(fd);
    timeval tv{0, 200'000};  // a client that does not read cannot stall the data path long
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const std::string json = session_->status_json() + "\n";
    std::size_t off = 0;
    while (off < json.size()) {
      const ssize_t n = ::send(fd, json.data() + off, json.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
  }
}

void Worker::run_once(int max_timeout_ms) {
  progress_ = session_->run_once();
  int timeout = max_timeout_ms;
  bool armed = false;
  if (progress_) {
    timeout = 0;
  } else {
    if (opts_.spin_ns > 0) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto budget = std::chrono::nanoseconds(opts_.spin_ns);
      for (std::uint32_t i = 1; !session_->has_requests(); ++i) {
        rpc::cpu_relax();
        if ((i & 31) == 0 && std::chrono::steady_clock::now() - t0 >= budget) break;
      }
    }
    if (session_->prepare_sleep()) {
      armed = true;
      if (session_->has_stalled_output()) {
        timeout = timeout < 0 ? 1 : std::min(timeout, 1);
      }
      if (const int t = session_->inspection_sleep_ms(); t >= 0) {  // chain deadlines
        timeout = timeout < 0 ? t : std::min(timeout, t);
      }
      if (session_->has_zombies()) {  // sock_diag is polled: nothing wakes us when A closes
        const int z = GuestSession::kZombieCheckMs;
        timeout = timeout < 0 ? z : std::min(timeout, z);
      }
    } else {
      timeout = 0;
    }
  }
  epoll_event evs[64];
  const int n = ::epoll_wait(epoll_.get(), evs, 64, timeout);
  if (armed) session_->after_wake();
  for (int i = 0; i < n; ++i) {
    const std::uint64_t t = evs[i].data.u64;
    if (t == kStopToken) {
      stop_.store(true);
      continue;
    }
    switch (token_kind(t)) {
      case TokenKind::kSignal: {
        signalfd_siginfo si;
        while (::read(signal_fd_.get(), &si, sizeof si) == sizeof si) {
        }
        stop_.store(true);
        break;
      }
      case TokenKind::kStatusListen:
        serve_status();
        break;
      default:
        session_->on_event(t, evs[i].events);
        break;
    }
  }
}

rpc::Status Worker::run() {
  while (!stop_.load()) run_once(-1);
  shutdown();
  return {};
}

void Worker::shutdown() {
  if (session_) session_->shutdown();
  if (status_listen_.valid()) {
    status_listen_.reset();
    ::unlink(opts_.status.c_str());
  }
}

}  // namespace tosec::tovm
