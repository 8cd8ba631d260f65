#include "tosec/cli/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <thread>

namespace tosec::cli {

using rpc::Error;
using rpc::Result;

namespace {

// Child side, between fork and exec: only async-signal-safe calls.
[[noreturn]] void child_exec(const SpawnSpec& spec, char* const* argv, char* const* envp,
                             int report_fd, pid_t parent) {
  if (report_fd < 3) report_fd = ::fcntl(report_fd, F_DUPFD_CLOEXEC, 3);
  auto die = [&report_fd](int err) {
    [[maybe_unused]] auto n = ::write(report_fd, &err, sizeof err);
    ::_exit(127);
  };
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) ::sigaction(s, &dfl, nullptr);
  }
  if (spec.new_process_group && ::setpgid(0, 0) < 0) die(errno);
  if (spec.die_with_parent) {
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) die(errno);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
  }
  // Move the wanted fds out of the way of 0-2 first, then put them in place.
  int fds[3] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
  for (int& fd : fds) {
    if (fd >= 0 && fd < 3) {
      const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
      if (copy < 0) die(errno);
      fd = copy;
    }
  }
  for (int i = 0; i < 3; ++i) {
    if (fds[i] >= 0 && ::dup2(fds[i], i) < 0) die(errno);
  }
  // Every inherited fd above 2 is closed except the report pipe (close-on-exec itself).
  if (report_fd > 3) ::close_range(3, static_cast<unsigned>(report_fd) - 1, 0);
  ::close_range(static_cast<unsigned>(report_fd) + 1, ~0U, 0);
  ::execvpe(argv[0], argv, envp);
  die(errno);
  ::_exit(127);  // not reached: die() exits
}

}  // namespace

Result<pid_t> spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) return Error{EINVAL, "spawn: empty command"};
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  int report[2];
  if (::pipe2(report, O_CLOEXEC) < 0) return rpc::errno_error("pipe2");
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(report[0]);
    ::close(report[1]);
    return Error{err, std::string("fork: ") + std::strerror(err)};
  }
  if (pid == 0) {
    ::close(report[0]);
    child_exec(spec, argv.data(), envp.data(), report[1], parent);
  }
  ::close(report[1]);
  int err = 0;
  ssize_t n = 0;
  do {
    n = ::read(report[0], &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n == static_cast<ssize_t>(sizeof err)) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return Error{err, spec.argv[0] + ": " + std::strerror(err)};
  }
  return pid;
}

bool try_reap(pid_t pid, int* status) {
  if (pid <= 0) return false;
  int st = 0;
  pid_t r = 0;
  do {
    r = ::waitpid(pid, &st, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid) {
    if (status != nullptr) *status = st;
    return true;
  }
  if (r < 0 && errno == ECHILD) {  // not ours, or already reaped elsewhere
    if (status != nullptr) *status = 0;
    return true;
  }
  return false;
}

void stop_processes(std::vector<pid_t*> pids, std::chrono::milliseconds grace) {
  for (pid_t* p : pids) {
    if (*p > 0) ::kill(*p, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (true) {
    bool live = false;
    for (pid_t* p : pids) {
      if (*p > 0 && try_reap(*p, nullptr)) *p = -1;
      if (*p > 0) live = true;
    }
    if (!live) return;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (pid_t* p : pids) {
    if (*p <= 0) continue;
    ::kill(*p, SIGKILL);
    while (::waitpid(*p, nullptr, 0) < 0 && errno == EINTR) {
    }
    *p = -1;
  }
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped (status " + std::to_string(status) + ")";
}

int open_log(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

std::string tail_file(const std::string& path, long offset, int lines) {
  std::ifstream in(path);
  if (!in) return "  (no log at " + path + ")\n";
  in.seekg(offset);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (last.size() > static_cast<std::size_t>(lines)) last.pop_front();
  }
  if (last.empty()) return "  (log " + path + " is empty)\n";
  std::string out;
  for (const auto& l : last) out += "  " + l + "\n";
  return out;
}

}  // namespace tosec::cli
