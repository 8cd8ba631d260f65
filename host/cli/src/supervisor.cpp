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

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
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

std::int64_t platform_guest_spin_ns(const std::string& runtime_dir, const std::string& guest) {
  std::ifstream in(runtime_dir + "/guests/" + guest + "/spin_ns");
  long long v = -1;
  if (!(in >> v) || v < 0) return -1;
  return v;
}

Status platform_up(const Config& cfg, const Binaries& bin) {
  const std::string& dir = cfg.platform.runtime_dir;
  if (auto pid = live_supervisor(dir)) {
    return Error{EEXIST, "a platform is already running in " + dir + " (supervisor pid " +
                             std::to_string(*pid) + "); run `tosec down` first"};
  }
  if (auto s = make_dirs(dir + "/logs"); !s) return s;
  // The daemon ships with the CLI: next to `tosec`, else with the platform binaries.
  std::string hostd = self_dir() + "/" + kHostdName;
  if (!is_executable(hostd)) {
    const std::string other = bin.tovm.substr(0, bin.tovm.rfind('/') + 1) + kHostdName;
    if (!is_executable(other)) {
      return Error{ENOENT, "tosec-hostd not found: neither " + hostd + " nor " + other +
                               " is an executable"};
    }
    hostd = other;
  }

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
    // The daemon is tosec-hostd (host/hostd): it takes the pidfile lock and reports readiness.
    std::vector<std::string> argv = {hostd, "--ready-fd", std::to_string(ready[1]), "--runtime-dir",
                                     dir};
    if (!cfg.source.empty() && cfg.source[0] != '<') {
      argv.push_back("--config");
      argv.push_back(cfg.source);
    }
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::fcntl(ready[1], F_SETFD, 0);  // inherited by the daemon
    ::execv(hostd.c_str(), cargv.data());
    write_all(ready[1], "cannot execute " + hostd + ": " + std::strerror(errno));
    ::_exit(1);
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
    return Error{EIO, "tosec-hostd exited during start-up; see " + dir + "/logs/supervisor.log"};
  }
  if (msg != kReadyMessage) {
    return Error{EIO, msg + "\n(tosec-hostd log: " + dir + "/logs/supervisor.log)"};
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
