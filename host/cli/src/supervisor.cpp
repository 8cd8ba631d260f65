#include "tosec/cli/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include "tosec/cli/inspection.h"
#include "tosec/cli/launch.h"
#include "tosec/cli/platform.h"
#include "tosec/cli/process.h"
#include "tosec/cli/shared_tovm.h"

namespace tosec::cli {

using rpc::Error;
using rpc::Status;
using Clock = std::chrono::steady_clock;

namespace {

// What the supervisor sends `tosec up` when every guest is ready; anything else is an error.
constexpr const char* kReadyMessage = "ready\n";

std::string pid_file(const std::string& runtime_dir) { return runtime_dir + "/" + kPidFileName; }

void log_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_line(const char* fmt, ...) {
  char ts[64];
  const time_t now = ::time(nullptr);
  struct tm tm {};
  ::gmtime_r(&now, &tm);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::fprintf(stderr, "%s tosec-supervisor[%d]: ", ts, ::getpid());
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

constexpr std::chrono::milliseconds kBackoffMin{250};
constexpr std::chrono::milliseconds kBackoffMax{30'000};
constexpr std::chrono::seconds kStableAfter{60};

// Restart bookkeeping of one child.
struct Restart {
  std::chrono::milliseconds backoff = kBackoffMin;
  Clock::time_point started{};
  std::optional<Clock::time_point> due;  // pending restart

  // The child died: schedule a restart and grow the backoff.
  std::chrono::milliseconds schedule() {
    if (Clock::now() - started >= kStableAfter) backoff = kBackoffMin;
    const auto wait = backoff;
    due = Clock::now() + wait;
    backoff = std::min(backoff * 2, kBackoffMax);
    return wait;
  }
};

struct SupervisedGuest {
  GuestPlatform platform;
  Restart server;
  Restart tovm;  // per-guest mode only
  std::vector<Restart> svms;
};

// Restarts with backoff: every guest's region server, its TOE (one per guest, or one shared by
// all: config [tovm] mode) and its SVMs. A region server's death takes the TOE serving it down
// too (its doorbells died with the server), so the pair restarts, server first.
class Supervisor {
 public:
  Supervisor(const Config& cfg, const Binaries& bin)
      : cfg_(cfg), shared_(cfg.tovm.mode == "shared") {
    for (const auto& g : cfg.guests) {
      GuestPaths paths = guest_paths(cfg.platform.runtime_dir, g.name,
                                     persistent_shm_name(cfg.platform.runtime_dir, g.name));
      guests_.push_back(SupervisedGuest{GuestPlatform(bin, cfg.tovm, g, paths), {}, {}, {}});
    }
    if (shared_) {
      shared_tovm_ =
          std::make_unique<SharedTovm>(bin, cfg.tovm, shared_tovm_log(cfg.platform.runtime_dir));
    }
  }

  Status start_all() {
    const std::string& dir = cfg_.platform.runtime_dir;
    auto data_dir = resolve_data_dir(::getenv("TOSEC_DATA_DIR"), self_dir());
    for (auto& g : guests_) {
      const auto& name = g.platform.guest().name;
      auto plan = plan_inspection(cfg_, name, data_dir ? *data_dir : std::string("."));
      if (!plan) return plan.error();
      if (!plan->empty()) {
        const std::string shm = g.platform.paths().shm_name;
        g.svms.assign(plan->svms.size(), Restart{});
        g.platform.set_inspection(std::move(*plan), inspection_paths(dir, name, shm));
      }
      // The guest's directory also records its exclude list for `tosec run`.
      if (auto s = make_dirs(g.platform.paths().dir); !s) return s;
      std::ofstream(g.platform.paths().dir + "/exclude")
          << join(g.platform.guest().exclude) << "\n";
      // A crashed earlier platform may have left the shm objects: start from blank regions.
      ::shm_unlink(g.platform.paths().shm_name.c_str());
      ::shm_unlink((g.platform.paths().shm_name + "-inspect").c_str());
      g.server.started = g.tovm.started = Clock::now();
      if (auto s = g.platform.start_regions(); !s) return s;
      if (!shared_) {
        if (auto s = g.platform.start_tovm(); !s) return s;
        if (auto s = g.platform.start_svms(); !s) return s;
        log_line("guest %s: started (%s pid %d, %s pid %d)", name.c_str(), kIvshmemServerName,
                 g.platform.server_pid(), kTovmName, g.platform.tovm_pid());
      }
    }
    if (shared_) {
      shared_restart_.started = Clock::now();
      if (auto s = shared_tovm_->start(platforms()); !s) return s;
      for (auto& g : guests_) {
        if (auto s = g.platform.start_svms(); !s) return s;
        log_line("guest %s: started (%s pid %d, shared %s pid %d)", g.platform.guest().name.c_str(),
                 kIvshmemServerName, g.platform.server_pid(), kTovmName, shared_tovm_->pid());
      }
    }
    return {};
  }

  void stop_all() {
    for (auto& g : guests_) g.platform.stop_svms();
    if (shared_tovm_) shared_tovm_->stop();
    for (auto& g : guests_) {
      g.platform.stop();
      log_line("guest %s: stopped", g.platform.guest().name.c_str());
    }
  }

  // Runs until SIGTERM/SIGINT. sfd: signalfd for SIGCHLD, SIGTERM, SIGINT, SIGHUP.
  void loop(int sfd) {
    while (true) {
      int timeout_ms = -1;
      const auto now = Clock::now();
      for (Restart* r : restarts()) {
        if (!r->due) continue;
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(*r->due - now).count();
        const int t = static_cast<int>(std::clamp<long long>(ms, 0, 60'000));
        timeout_ms = timeout_ms < 0 ? t : std::min(timeout_ms, t);
      }
      pollfd p{sfd, POLLIN, 0};
      const int r = ::poll(&p, 1, timeout_ms);
      if (r < 0 && errno != EINTR) {
        log_line("poll: %s", std::strerror(errno));
        return;
      }
      if (r > 0) {
        signalfd_siginfo si{};
        while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
          if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            log_line("signal %u: stopping", si.ssi_signo);
            return;
          }
          if (si.ssi_signo == SIGHUP) log_line("SIGHUP ignored (config reload is not supported)");
        }
        reap();
      }
      run_due_restarts();
    }
  }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& e : v) s += (s.empty() ? "" : ",") + e;
    return s;
  }

  std::vector<GuestPlatform*> platforms() {
    std::vector<GuestPlatform*> v;
    for (auto& g : guests_) v.push_back(&g.platform);
    return v;
  }

  std::vector<Restart*> restarts() {
    std::vector<Restart*> v;
    if (shared_) v.push_back(&shared_restart_);
    for (auto& g : guests_) {
      v.push_back(&g.server);
      v.push_back(&g.tovm);
      for (auto& r : g.svms) v.push_back(&r);
    }
    return v;
  }

  // The TOE serving guest g stops (with its SVMs: they re-attach the region it re-formats).
  void stop_tovm_of(SupervisedGuest& g) {
    if (shared_) {
      for (auto& o : guests_) o.platform.stop_svms();
      shared_tovm_->stop();
      shared_restart_.due.reset();
    } else {
      g.platform.stop_svms();
      g.platform.stop_tovm();
      g.tovm.due.reset();
    }
  }

  void reap() {
    while (true) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      const std::string how = describe_wait_status(status);
      if (shared_tovm_ && shared_tovm_->forget(pid)) {
        for (auto& g : guests_) g.platform.stop_svms();
        const auto wait = shared_restart_.schedule();
        log_line("shared %s (pid %d) %s; restarting in %lld ms, for every guest (log %s)",
                 kTovmName, pid, how.c_str(), static_cast<long long>(wait.count()),
                 shared_tovm_->log().c_str());
        continue;
      }
      for (auto& g : guests_) {
        const auto& name = g.platform.guest().name;
        if (pid == g.platform.server_pid()) {
          g.platform.forget(pid);
          stop_tovm_of(g);
          g.platform.stop_server();
          const auto wait = g.server.schedule();
          log_line("guest %s: %s (pid %d) %s; TOE stopped; restarting both in %lld ms (log %s)",
                   name.c_str(), kIvshmemServerName, pid, how.c_str(),
                   static_cast<long long>(wait.count()), g.platform.paths().ivshmem_log.c_str());
        } else if (pid == g.platform.tovm_pid()) {
          g.platform.forget(pid);
          g.platform.stop_svms();
          const auto wait = g.tovm.schedule();
          log_line("guest %s: %s (pid %d) %s; restarting in %lld ms (log %s)", name.c_str(),
                   kTovmName, pid, how.c_str(), static_cast<long long>(wait.count()),
                   g.platform.paths().tovm_log.c_str());
        } else if (const int i = g.platform.svm_index(pid); i >= 0) {
          // The TOE applies the chain's fail policy to the dead SVM's streams meanwhile.
          g.platform.forget(pid);
          const auto wait = g.svms[static_cast<std::size_t>(i)].schedule();
          log_line("guest %s: svm %s (pid %d) %s; restarting in %lld ms", name.c_str(),
                   g.platform.inspection().svms[static_cast<std::size_t>(i)].svm.name.c_str(), pid,
                   how.c_str(), static_cast<long long>(wait.count()));
        }
      }
    }
  }

  bool all_servers_up() const {
    return std::all_of(guests_.begin(), guests_.end(),
                       [](const SupervisedGuest& g) { return g.platform.server_pid() > 0; });
  }

  // A TOE (re)started: the SVMs of the guests it serves start after it.
  void start_svms_of(SupervisedGuest& g) {
    if (auto s = g.platform.start_svms(); !s) {
      log_line("guest %s: svm start failed: %s", g.platform.guest().name.c_str(),
               s.message().c_str());
    }
  }

  // A restart that is due now: runs `start` once; on failure reschedules it with backoff and
  // logs "<failed>: <error>; retrying in N ms". True if the child was started.
  static bool run_restart(Restart& r, Clock::time_point now, const std::string& failed,
                          const std::function<Status()>& start) {
    if (!r.due || *r.due > now) return false;
    r.due.reset();
    r.started = Clock::now();
    if (auto s = start(); !s) {
      const auto wait = r.schedule();
      log_line("%s: %s; retrying in %lld ms", failed.c_str(), s.message().c_str(),
               static_cast<long long>(wait.count()));
      return false;
    }
    return true;
  }

  void run_due_restarts() {
    const auto now = Clock::now();
    for (auto& g : guests_) {
      const std::string who = "guest " + g.platform.guest().name;
      if (run_restart(g.server, now, who + ": restart failed",
                      [&] { return g.platform.start_regions(); })) {
        log_line("%s: %s restarted (pid %d)", who.c_str(), kIvshmemServerName,
                 g.platform.server_pid());
        (shared_ ? shared_restart_ : g.tovm).due = now;  // and its TOE right away
      }
      if (!shared_ && g.platform.server_pid() > 0 &&
          run_restart(g.tovm, now, who + ": restart failed",
                      [&] { return g.platform.start_tovm(); })) {
        log_line("%s: %s restarted (pid %d)", who.c_str(), kTovmName, g.platform.tovm_pid());
        start_svms_of(g);
      }
      const bool toe_up = shared_ ? shared_tovm_->pid() > 0 : g.platform.tovm_pid() > 0;
      for (std::size_t i = 0; toe_up && i < g.svms.size(); ++i) {
        const std::string svm = who + ": svm " + g.platform.inspection().svms[i].svm.name;
        if (run_restart(g.svms[i], now, svm + " restart failed",
                        [&] { return g.platform.start_svm(i); })) {
          log_line("%s restarted", svm.c_str());
        }
      }
    }
    if (shared_ && all_servers_up() &&
        run_restart(shared_restart_, now, std::string("shared ") + kTovmName + " restart failed",
                    [&] { return shared_tovm_->start(platforms()); })) {
      log_line("shared %s restarted (pid %d)", kTovmName, shared_tovm_->pid());
      for (auto& g : guests_) start_svms_of(g);
    }
  }

  const Config& cfg_;
  bool shared_;
  std::vector<SupervisedGuest> guests_;
  std::unique_ptr<SharedTovm> shared_tovm_;
  Restart shared_restart_;
};

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

// The daemon: never returns.
[[noreturn]] void supervisor_main(const Config& cfg, const Binaries& bin, int ready_fd) {
  const std::string& dir = cfg.platform.runtime_dir;
  auto fail = [&](const std::string& msg) {
    write_all(ready_fd, msg);
    ::_exit(1);
  };
  const int pfd = ::open(pid_file(dir).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (pfd < 0) fail("cannot open " + pid_file(dir) + ": " + std::strerror(errno));
  if (::flock(pfd, LOCK_EX | LOCK_NB) < 0) {
    fail("another supervisor holds " + pid_file(dir) + " (tosec down first)");
  }
  // Only the lock holder may clear what a platform that did not stop cleanly left behind.
  remove_tree(dir + "/guests");
  if (auto s = make_dirs(dir + "/guests"); !s) fail(s.message());
  const std::string pid_text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(pfd, 0) < 0) fail("cannot truncate " + pid_file(dir));
  write_all(pfd, pid_text);

  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  const int log = open_log(dir + "/logs/supervisor.log");
  if (null < 0 || log < 0)
    fail("cannot open " + dir + "/logs/supervisor.log: " + std::strerror(errno));
  ::dup2(null, STDIN_FILENO);
  ::dup2(log, STDOUT_FILENO);
  ::dup2(log, STDERR_FILENO);
  ::close(null);
  ::close(log);
  if (::chdir("/") < 0) {
    // not fatal: only keeps the daemon from pinning a directory
  }

  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  const int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  ::signal(SIGPIPE, SIG_IGN);
  if (sfd < 0) fail(std::string("signalfd: ") + std::strerror(errno));

  log_line("starting %zu guest(s) from %s in %s", cfg.guests.size(), cfg.source.c_str(),
           dir.c_str());
  int code = 0;
  {
    Supervisor sup(cfg, bin);
    if (auto s = sup.start_all(); !s) {
      log_line("start failed: %s", s.message().c_str());
      sup.stop_all();
      ::unlink(pid_file(dir).c_str());
      fail(s.message());
    }
    log_line("all guests ready");
    write_all(ready_fd, kReadyMessage);  // `tosec up` returns 0
    ::close(ready_fd);
    sup.loop(sfd);
    sup.stop_all();
  }
  remove_tree(dir + "/guests");
  ::unlink(pid_file(dir).c_str());
  log_line("stopped");
  ::_exit(code);
}

}  // namespace

std::optional<pid_t> live_supervisor(const std::string& runtime_dir) {
  const int fd = ::open(pid_file(runtime_dir).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<pid_t> out;
  if (::flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
    char buf[32] = {};
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    const long pid = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
    out = pid > 0 ? static_cast<pid_t>(pid) : 0;
  }
  ::close(fd);
  return out;
}

std::vector<std::string> platform_guests(const std::string& runtime_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(runtime_dir + "/guests", ec)) {
    if (e.is_directory()) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> platform_guest_exclude(const std::string& runtime_dir,
                                                const std::string& guest) {
  std::ifstream in(runtime_dir + "/guests/" + guest + "/exclude");
  std::string line;
  if (!in || !std::getline(in, line)) return {};
  auto list = parse_exclude_list(line);
  return list ? *list : std::vector<std::string>{};
}

Status platform_up(const Config& cfg, const Binaries& bin) {
  const std::string& dir = cfg.platform.runtime_dir;
  if (auto pid = live_supervisor(dir)) {
    return Error{EEXIST, "a platform is already running in " + dir + " (supervisor pid " +
                             std::to_string(*pid) + "); run `tosec down` first"};
  }
  if (auto s = make_dirs(dir + "/logs"); !s) return s;

  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) < 0) return rpc::errno_error("pipe2");
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child < 0) return rpc::errno_error("fork");
  if (child == 0) {
    ::close(ready[0]);
    // The daemon must not hold its starter's fds (a test harness waits for their EOF).
    const auto keep = static_cast<unsigned>(ready[1]);
    if (keep > 3) ::close_range(3, keep - 1, 0);
    ::close_range(keep + 1, ~0U, 0);
    ::setsid();
    const pid_t daemon = ::fork();
    if (daemon < 0) {
      write_all(ready[1], std::string("cannot fork the supervisor: ") + std::strerror(errno));
      ::_exit(1);
    }
    if (daemon > 0) ::_exit(0);
    ::umask(022);
    supervisor_main(cfg, bin, ready[1]);
  }
  ::close(ready[1]);
  while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
  // The supervisor bounds each start by its own timeouts; read its verdict until EOF.
  std::string msg;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(ready[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    msg.append(buf, static_cast<std::size_t>(n));
  }
  ::close(ready[0]);
  if (msg.empty()) {  // the supervisor died before it could say anything
    return Error{EIO, "the supervisor exited during start-up; see " + dir + "/logs/supervisor.log"};
  }
  if (msg != kReadyMessage) {
    return Error{EIO, msg + "\n(supervisor log: " + dir + "/logs/supervisor.log)"};
  }
  return {};
}

Status platform_down(const std::string& runtime_dir, bool* was_running) {
  *was_running = false;
  const int fd = ::open(pid_file(runtime_dir).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {  // stale pidfile: nobody holds it
    ::close(fd);
    return {};
  }
  char buf[32] = {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  const long pid = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
  if (pid <= 0) {
    ::close(fd);
    return Error{EIO, "cannot read the supervisor pid from " + pid_file(runtime_dir)};
  }
  *was_running = true;
  if (::kill(static_cast<pid_t>(pid), SIGTERM) < 0 && errno != ESRCH) {
    auto e = rpc::errno_error("kill(" + std::to_string(pid) + ")");
    ::close(fd);
    return e;
  }
  // The lock is released when the supervisor exits, after it stopped its children
  // (each within 5 s, then SIGKILL).
  const auto wait_unlocked = [&](std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      if (::flock(fd, LOCK_SH | LOCK_NB) == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  if (!wait_unlocked(std::chrono::seconds(60))) {
    ::kill(static_cast<pid_t>(pid), SIGKILL);  // its children die with it (PDEATHSIG)
    if (!wait_unlocked(std::chrono::seconds(5))) {
      ::close(fd);
      return Error{ETIMEDOUT, "supervisor pid " + std::to_string(pid) + " did not stop"};
    }
  }
  ::close(fd);
  return {};
}

}  // namespace tosec::cli
