#include "tosec/hostd/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "tosec/cli/inspection.h"
#include "tosec/cli/process.h"

namespace tosec::hostd {

using cli::GuestPlatform;
using cli::kIvshmemServerName;
using cli::kTovmName;
using rpc::Status;
using Clock = std::chrono::steady_clock;

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

namespace {

constexpr std::chrono::milliseconds kBackoffMin{250};
constexpr std::chrono::milliseconds kBackoffMax{30'000};
constexpr std::chrono::seconds kStableAfter{60};

std::int64_t unix_ns_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : ",") + e;
  return s;
}

}  // namespace

// Restart bookkeeping of one child.
struct Supervisor::Restart {
  std::chrono::milliseconds backoff = kBackoffMin;
  Clock::time_point started{};
  std::int64_t started_unix_ns = 0;
  std::uint32_t count = 0;               // deaths so far (for Status and metrics)
  std::optional<Clock::time_point> due;  // pending restart

  void mark_started() {
    started = Clock::now();
    started_unix_ns = unix_ns_now();
  }
  // The child died: schedule a restart and grow the backoff.
  std::chrono::milliseconds schedule() {
    ++count;
    if (Clock::now() - started >= kStableAfter) backoff = kBackoffMin;
    const auto wait = backoff;
    due = Clock::now() + wait;
    backoff = std::min(backoff * 2, kBackoffMax);
    return wait;
  }
};

struct Supervisor::SupervisedGuest {
  GuestPlatform platform;
  Restart server;
  Restart tovm;  // per-guest mode only
  std::vector<Restart> svms;
};

Supervisor::Supervisor(const cli::Config& cfg, const cli::Binaries& bin)
    : cfg_(cfg), shared_(cfg.tovm.mode == "shared"), shared_restart_(std::make_unique<Restart>()) {
  for (std::size_t i = 0; i < cfg.guests.size(); ++i) {
    const cli::GuestConfig& g = cfg.guests[i];
    cli::GuestPaths paths =
        cli::guest_paths(cfg.platform.runtime_dir, g.name,
                         cli::persistent_shm_name(cfg.platform.runtime_dir, g.name));
    guests_.push_back(std::make_unique<SupervisedGuest>(SupervisedGuest{
        GuestPlatform(bin, cli::tovm_for_guest(cfg.tovm, i), g, paths), {}, {}, {}}));
  }
  if (shared_) {
    shared_tovm_ = std::make_unique<cli::SharedTovm>(
        bin, cfg.tovm, cli::shared_tovm_log(cfg.platform.runtime_dir));
  }
}

Supervisor::~Supervisor() = default;

Status Supervisor::start_all() {
  std::lock_guard lock(mu_);
  const std::string& dir = cfg_.platform.runtime_dir;
  auto data_dir = cli::resolve_data_dir(::getenv("TOSEC_DATA_DIR"), cli::self_dir());
  for (auto& gp : guests_) {
    auto& g = *gp;
    const auto& name = g.platform.guest().name;
    auto plan = cli::plan_inspection(cfg_, name, data_dir ? *data_dir : std::string("."));
    if (!plan) return plan.error();
    if (!plan->empty()) {
      const std::string shm = g.platform.paths().shm_name;
      g.svms.assign(plan->svms.size(), Restart{});
      for (auto& r : g.svms) r.mark_started();
      g.platform.set_inspection(std::move(*plan), cli::inspection_paths(dir, name, shm));
    }
    // The guest's directory also records its exclude list for `tosec run`.
    if (auto s = cli::make_dirs(g.platform.paths().dir); !s) return s;
    std::ofstream(g.platform.paths().dir + "/exclude") << join(g.platform.guest().exclude) << "\n";
    std::ofstream(g.platform.paths().dir + "/spin_ns") << g.platform.guest().spin_ns << "\n";
    // A crashed earlier platform may have left the shm objects: start from blank regions.
    ::shm_unlink(g.platform.paths().shm_name.c_str());
    ::shm_unlink((g.platform.paths().shm_name + "-inspect").c_str());
    g.server.mark_started();
    g.tovm.mark_started();
    if (auto s = g.platform.start_regions(); !s) return s;
    if (!shared_) {
      if (auto s = g.platform.start_tovm(); !s) return s;
      if (auto s = g.platform.start_svms(); !s) return s;
      log_line("guest %s: started (%s pid %d, %s pid %d)", name.c_str(), kIvshmemServerName,
               g.platform.server_pid(), kTovmName, g.platform.tovm_pid());
    }
  }
  if (shared_) {
    shared_restart_->mark_started();
    if (auto s = shared_tovm_->start(platforms()); !s) return s;
    for (auto& g : guests_) {
      if (auto s = g->platform.start_svms(); !s) return s;
      log_line("guest %s: started (%s pid %d, shared %s pid %d)", g->platform.guest().name.c_str(),
               kIvshmemServerName, g->platform.server_pid(), kTovmName, shared_tovm_->pid());
    }
  }
  return {};
}

void Supervisor::stop_all() {
  std::lock_guard lock(mu_);
  for (auto& g : guests_) g->platform.stop_svms();
  if (shared_tovm_) shared_tovm_->stop();
  for (auto& g : guests_) {
    g->platform.stop();
    log_line("guest %s: stopped", g->platform.guest().name.c_str());
  }
}

void Supervisor::loop(int sfd) {
  while (true) {
    int timeout_ms = -1;
    {
      std::lock_guard lock(mu_);
      const auto now = Clock::now();
      for (Restart* r : restarts()) {
        if (!r->due) continue;
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(*r->due - now).count();
        const int t = static_cast<int>(std::clamp<long long>(ms, 0, 60'000));
        timeout_ms = timeout_ms < 0 ? t : std::min(timeout_ms, t);
      }
    }
    pollfd p{sfd, POLLIN, 0};
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno != EINTR) {
      log_line("poll: %s", std::strerror(errno));
      return;
    }
    std::lock_guard lock(mu_);
    if (r > 0) {
      signalfd_siginfo si{};
      while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
          log_line("signal %u: stopping", si.ssi_signo);
          return;
        }
        if (si.ssi_signo == SIGHUP) {
          log_line("SIGHUP ignored (live changes go through the gRPC API: tosec chain/policy)");
        }
      }
      reap();
    }
    run_due_restarts();
  }
}

std::vector<cli::GuestPlatform*> Supervisor::platforms() {
  std::vector<GuestPlatform*> v;
  for (auto& g : guests_) v.push_back(&g->platform);
  return v;
}

pid_t Supervisor::tovm_pid(const std::string& guest) const {
  for (const auto& g : guests_) {
    if (g->platform.guest().name != guest) continue;
    const pid_t pid = shared_ ? shared_tovm_->pid() : g->platform.tovm_pid();
    return pid > 0 ? pid : 0;
  }
  return 0;
}

std::vector<RoleInfo> Supervisor::roles() const {
  std::vector<RoleInfo> out;
  auto add = [&](std::string name, std::string kind, pid_t pid, const Restart& r) {
    RoleInfo i{std::move(name),   std::move(kind), "running",
               pid > 0 ? pid : 0, r.count,         r.started_unix_ns};
    if (pid <= 0) i.state = r.due ? "restarting" : "stopped";
    out.push_back(std::move(i));
  };
  if (shared_) add("tovm", "tovm", shared_tovm_->pid(), *shared_restart_);
  for (const auto& g : guests_) {
    const auto& name = g->platform.guest().name;
    add(name + ".ivshmem", "host", g->platform.server_pid(), g->server);
    if (!shared_) add(name + ".tovm", "tovm", g->platform.tovm_pid(), g->tovm);
    const auto& svms = g->platform.inspection().svms;
    for (std::size_t i = 0; i < g->svms.size() && i < svms.size(); ++i) {
      add(name + ".svm." + svms[i].svm.name, "svm", g->platform.svm_pid(i), g->svms[i]);
    }
  }
  return out;
}

bool Supervisor::degraded() const {
  for (auto* r : const_cast<Supervisor*>(this)->restarts()) {
    if (r->due) return true;
  }
  return false;
}

std::vector<Supervisor::Restart*> Supervisor::restarts() {
  std::vector<Restart*> v;
  if (shared_) v.push_back(shared_restart_.get());
  for (auto& g : guests_) {
    v.push_back(&g->server);
    v.push_back(&g->tovm);
    for (auto& r : g->svms) v.push_back(&r);
  }
  return v;
}

// The TOE serving guest g stops (with its SVMs: they re-attach the region it re-formats).
void Supervisor::stop_tovm_of(SupervisedGuest& g) {
  if (shared_) {
    for (auto& o : guests_) o->platform.stop_svms();
    shared_tovm_->stop();
    shared_restart_->due.reset();
  } else {
    g.platform.stop_svms();
    g.platform.stop_tovm();
    g.tovm.due.reset();
  }
}

void Supervisor::reap() {
  while (true) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    const std::string how = cli::describe_wait_status(status);
    if (shared_tovm_ && shared_tovm_->forget(pid)) {
      for (auto& g : guests_) g->platform.stop_svms();
      const auto wait = shared_restart_->schedule();
      log_line("shared %s (pid %d) %s; restarting in %lld ms, for every guest (log %s)", kTovmName,
               pid, how.c_str(), static_cast<long long>(wait.count()), shared_tovm_->log().c_str());
      continue;
    }
    for (auto& gp : guests_) {
      auto& g = *gp;
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

bool Supervisor::all_servers_up() const {
  return std::all_of(guests_.begin(), guests_.end(),
                     [](const auto& g) { return g->platform.server_pid() > 0; });
}

// A TOE (re)started: the SVMs of the guests it serves start after it.
void Supervisor::start_svms_of(SupervisedGuest& g) {
  if (auto s = g.platform.start_svms(); !s) {
    log_line("guest %s: svm start failed: %s", g.platform.guest().name.c_str(),
             s.message().c_str());
  }
}

// A restart that is due now: runs `start` once; on failure reschedules it with backoff and
// logs "<failed>: <error>; retrying in N ms". True if the child was started.
bool Supervisor::run_restart(Restart& r, Clock::time_point now, const std::string& failed,
                             const std::function<Status()>& start) {
  if (!r.due || *r.due > now) return false;
  r.due.reset();
  r.mark_started();
  if (auto s = start(); !s) {
    const auto wait = r.schedule();
    log_line("%s: %s; retrying in %lld ms", failed.c_str(), s.message().c_str(),
             static_cast<long long>(wait.count()));
    return false;
  }
  return true;
}

void Supervisor::run_due_restarts() {
  const auto now = Clock::now();
  for (auto& gp : guests_) {
    auto& g = *gp;
    const std::string who = "guest " + g.platform.guest().name;
    if (run_restart(g.server, now, who + ": restart failed",
                    [&] { return g.platform.start_regions(); })) {
      log_line("%s: %s restarted (pid %d)", who.c_str(), kIvshmemServerName,
               g.platform.server_pid());
      (shared_ ? *shared_restart_ : g.tovm).due = now;  // and its TOE right away
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
      run_restart(*shared_restart_, now, std::string("shared ") + kTovmName + " restart failed",
                  [&] { return shared_tovm_->start(platforms()); })) {
    log_line("shared %s restarted (pid %d)", kTovmName, shared_tovm_->pid());
    for (auto& g : guests_) start_svms_of(*g);
  }
}

}  // namespace tosec::hostd
