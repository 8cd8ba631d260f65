#include "tosec/cli/run.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "tosec/cli/launch.h"
#include "tosec/cli/platform.h"
#include "tosec/cli/process.h"
#include "tosec/cli/supervisor.h"

namespace tosec::cli {

namespace {

void say(const std::string& msg) { std::fprintf(stderr, "tosec: %s\n", msg.c_str()); }

constexpr const char* kRunLock = "run.lock";

// Removes private runtime dirs of `tosec run`s that were SIGKILLed (nobody holds their lock).
// Their processes are gone already (PDEATHSIG); only files are left.
void sweep_stale_run_dirs(const std::string& base) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with("tosec-run.") || !e.is_directory(ec)) continue;
    const int fd = ::open((e.path() / kRunLock).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // being created right now, or not ours
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      // Its region too, if the ivshmem server could not unlink it (shm names embed the
      // dir's random suffix: /tosec-run-<pid>-<suffix>-<guest>).
      const std::string tag = "-" + name.substr(name.size() - 6) + "-";
      for (const auto& shm : std::filesystem::directory_iterator("/dev/shm", ec)) {
        const std::string n = shm.path().filename().string();
        if (n.starts_with("tosec-run-") && n.find(tag) != std::string::npos) {
          ::shm_unlink(("/" + n).c_str());
        }
      }
      remove_tree(e.path().string());
    }
    ::close(fd);
  }
}

// Blocks the signals `tosec run` handles and reads them from a signalfd; restores on exit.
class SignalGuard {
 public:
  SignalGuard() {
    sigemptyset(&set_);
    for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, s);
    ::sigprocmask(SIG_BLOCK, &set_, &old_);
    fd_ = ::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK);
  }
  ~SignalGuard() {
    if (fd_ >= 0) ::close(fd_);
    ::sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;
  int fd() const { return fd_; }

 private:
  sigset_t set_{};
  sigset_t old_{};
  int fd_ = -1;
};

// $TMPDIR if set and short enough for the sockets below it, else /tmp.
std::string run_dir_base(const std::string& guest) {
  const char* t = ::getenv("TMPDIR");
  std::string base = t != nullptr && *t == '/' ? t : "/tmp";
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  const std::size_t need =
      base.size() + sizeof("/tosec-run.XXXXXX/guests/") + guest.size() + sizeof("/ivshmem.sock");
  if (need >= 100) base = "/tmp";  // sockaddr_un::sun_path holds 108 bytes
  return base;
}

// A terminate signal that came before the command started (0 if none).
int pending_terminate(int sfd) {
  signalfd_siginfo si{};
  int sig = 0;
  while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    if (si.ssi_signo != SIGCHLD) sig = static_cast<int>(si.ssi_signo);
  }
  return sig;
}

}  // namespace

int run_command(const Config& config, const RunOptions& opts) {
  if (opts.command.empty()) {
    say("run: no command given (usage: tosec run [OPTIONS] -- CMD [ARGS...])");
    return 2;
  }
  Config cfg = config;  // --chain adds an SVM chain to a copy
  const std::string& runtime_dir = cfg.platform.runtime_dir;

  // Which guest, and is a `tosec up` platform serving it?
  std::optional<pid_t> supervisor;
  if (!opts.embedded) supervisor = live_supervisor(runtime_dir);
  std::string guest_name;
  if (opts.guest) {
    guest_name = *opts.guest;
  } else if (supervisor && !opts.config_given) {
    const auto names = platform_guests(runtime_dir);
    if (names.size() == 1) {
      guest_name = names[0];
    } else if (std::find(names.begin(), names.end(), kDefaultGuestName) != names.end()) {
      guest_name = kDefaultGuestName;
    } else {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      say("the platform in " + runtime_dir + " serves guests " + list +
          ": choose one with --guest");
      return 2;
    }
  } else {
    guest_name = cfg.guests.at(0).name;
  }
  bool use_running = false;
  if (supervisor && !opts.chain) {  // a running platform's chains come from its own config
    const auto names = platform_guests(runtime_dir);
    use_running = std::find(names.begin(), names.end(), guest_name) != names.end();
  }
  const GuestConfig* guest = cfg.find_guest(guest_name);
  if (!use_running && guest == nullptr) {
    say("no guest \"" + guest_name + "\" in " + cfg.source +
        (supervisor ? " nor in the platform running in " + runtime_dir : std::string()));
    return 2;
  }

  if (opts.chain) {
    if (auto s = apply_chain_option(cfg, guest_name, *opts.chain, opts.fail); !s) {
      say(s.message());
      return 2;
    }
  }

  const std::string tmp_base = run_dir_base(guest_name);
  sweep_stale_run_dirs(tmp_base);
  auto preload = resolve_preload(::getenv("TOSEC_PRELOAD"), self_dir());
  if (!preload) {
    say(preload.error().message);
    return kExitPlatformError;
  }

  SignalGuard signals;
  if (signals.fd() < 0) {
    say(std::string("signalfd: ") + std::strerror(errno));
    return kExitPlatformError;
  }

  std::string private_dir;
  std::unique_ptr<GuestPlatform> platform;
  auto teardown = [&] {
    if (platform) platform->stop();
    platform.reset();
    if (!private_dir.empty()) {
      if (opts.keep_runtime_dir) {
        say("runtime dir kept: " + private_dir);
      } else {
        remove_tree(private_dir);
      }
    }
  };

  AppEnv app;
  app.preload = *preload;
  app.guest = guest_name;
  if (use_running) {
    const GuestPaths paths = guest_paths(runtime_dir, guest_name, "");
    app.ivshmem_socket = paths.ivshmem_socket;
    app.toe_socket = paths.sidecar_socket;
    app.exclude = platform_guest_exclude(runtime_dir, guest_name);
    app.spin_ns = platform_guest_spin_ns(runtime_dir, guest_name);
  } else {
    auto bin = resolve_binaries(::getenv("TOSEC_BIN_DIR"), self_dir());
    if (!bin) {
      say(bin.error().message);
      return kExitPlatformError;
    }
    std::string tmpl = tmp_base + "/tosec-run.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      say("mkdtemp(" + tmpl + "): " + std::strerror(errno));
      return kExitPlatformError;
    }
    private_dir = tmpl;
    // Held until we exit: tells sweep_stale_run_dirs() this dir is alive.
    // Locked before it gets its name, so a sweeper never sees it unlocked.
    const std::string lock_tmp = private_dir + "/" + kRunLock + ".new";
    const int lock = ::open(lock_tmp.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || ::flock(lock, LOCK_EX) < 0 ||
        ::rename(lock_tmp.c_str(), (private_dir + "/" + kRunLock).c_str()) < 0) {
      say("cannot lock " + private_dir + "/" + kRunLock + ": " + std::strerror(errno));
      remove_tree(private_dir);
      return kExitPlatformError;
    }
    const std::string shm = "/tosec-run-" + std::to_string(::getpid()) + "-" +
                            private_dir.substr(private_dir.size() - 6) + "-" + guest_name;
    const GuestPaths paths = guest_paths(private_dir, guest_name, shm);
    platform = std::make_unique<GuestPlatform>(*bin, cfg.tovm, *guest, paths);
    auto data_dir = resolve_data_dir(::getenv("TOSEC_DATA_DIR"), self_dir());
    auto plan = plan_inspection(cfg, guest_name, data_dir ? *data_dir : std::string("."));
    if (!plan) {
      say(plan.error().message);
      teardown();
      return 2;
    }
    if (!plan->empty()) {
      const bool needs_defaults =
          std::any_of(plan->svms.begin(), plan->svms.end(), [&](const SvmInstance& v) {
            return std::none_of(cfg.svms.begin(), cfg.svms.end(), [&](const SvmConfig& c) {
              return c.name == v.svm.name && !c.rules.empty();
            });
          });
      if (needs_defaults && !data_dir) {
        say(data_dir.error().message);
        teardown();
        return kExitPlatformError;
      }
      platform->set_inspection(std::move(*plan),
                               inspection_paths(private_dir, guest_name, shm, opts.alert_log));
    }
    if (auto s = platform->start(); !s) {
      say("cannot bring up the embedded platform: " + s.message());
      teardown();
      return kExitPlatformError;
    }
    app.ivshmem_socket = paths.ivshmem_socket;
    app.toe_socket = paths.sidecar_socket;
    app.exclude = guest->exclude;
    app.spin_ns = guest->spin_ns;
  }
  for (const auto& e : opts.exclude) {
    if (std::find(app.exclude.begin(), app.exclude.end(), e) == app.exclude.end()) {
      app.exclude.push_back(e);
    }
  }

  if (const int sig = pending_terminate(signals.fd()); sig != 0) {
    teardown();
    return 128 + sig;
  }

  SpawnSpec spec;
  spec.argv = opts.command;
  spec.env = build_app_env(current_environment(), app);
  spec.die_with_parent = true;  // a SIGKILLed tosec takes its application along
  auto cmd = spawn(spec);
  if (!cmd) {
    const int err = cmd.error().code;
    say(opts.command[0] + ": " +
        (err == ENOENT ? std::string("command not found") : std::strerror(err)));
    teardown();
    return err == ENOENT ? kExitNotFound : kExitCannotExecute;
  }
  const pid_t pid = *cmd;

  int exit_code = 1;
  bool done = false;
  while (!done) {
    pollfd p{signals.fd(), POLLIN, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) {
      say(std::string("poll: ") + std::strerror(errno));
      break;
    }
    signalfd_siginfo si{};
    while (::read(signals.fd(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      const int sig = static_cast<int>(si.ssi_signo);
      if (sig == SIGCHLD) continue;
      // A terminal's signals already reached the command (same foreground process group):
      // forwarding them again would deliver them twice.
      if (si.ssi_code == SI_KERNEL) continue;
      ::kill(pid, sig);
    }
    while (true) {
      int status = 0;
      const pid_t r = ::waitpid(-1, &status, WNOHANG);
      if (r <= 0) break;
      if (r == pid) {
        exit_code = exit_code_from_wait_status(status);
        done = true;
      } else if (const int svm = platform ? platform->svm_index(r) : -1; svm >= 0) {
        // The TOE applies the chain's fail policy to the dead SVM's streams; we bring it back
        // for new streams.
        platform->forget(r);
        const auto& name = platform->inspection().svms[static_cast<std::size_t>(svm)].svm.name;
        say("warning: svm " + name + " (pid " + std::to_string(r) + ") " +
            describe_wait_status(status) + "; restarting it");
        if (auto s = platform->start_svm(static_cast<std::size_t>(svm)); !s) {
          say("warning: cannot restart svm " + name + ": " + s.message());
        }
      } else if (platform && (r == platform->tovm_pid() || r == platform->server_pid())) {
        const bool tovm = r == platform->tovm_pid();
        platform->forget(r);
        const std::string& log = tovm ? platform->paths().tovm_log : platform->paths().ivshmem_log;
        say(std::string("warning: ") + (tovm ? kTovmName : kIvshmemServerName) + " (pid " +
            std::to_string(r) + ") " + describe_wait_status(status) +
            " while the command runs; end of " + log + ":\n" + tail_file(log, 0, 10));
      }
    }
  }
  teardown();
  return exit_code;
}

}  // namespace tosec::cli
