// Helpers for the ivshmem tests (unit and the QEMU integration test): temp dirs, child
// processes that are always reaped, an in-process server thread, bounded waits.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ivshmem_server.h"

namespace tosec::test {

// Unique per process and call, so parallel ctest runs never share a socket or shm name.
inline std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

inline bool wait_until(const std::function<bool()>& cond, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

inline bool path_exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tosec-ivs-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A spawned process that is killed and reaped when the guard goes out of scope, so a failed
// assertion never leaves a server or a QEMU behind.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(ChildProcess&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  ChildProcess& operator=(ChildProcess&& o) noexcept {
    if (this != &o) {
      kill_and_reap();
      pid_ = o.pid_;
      o.pid_ = -1;
    }
    return *this;
  }
  ChildProcess(const ChildProcess&) = delete;
  ~ChildProcess() { kill_and_reap(); }

  // Starts argv[0] (searched in PATH) with stdout/stderr redirected to the given files.
  static ChildProcess spawn(const std::vector<std::string>& argv, const std::string& out_path,
                            const std::string& err_path) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ChildProcess c;
    pid_t pid = -1;
    if (::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ) == 0) c.pid_ = pid;
    posix_spawn_file_actions_destroy(&fa);
    return c;
  }

  pid_t pid() const { return pid_; }
  bool started() const { return pid_ > 0; }

  // Exit status (as from waitpid) once the process ended, or nullopt after `timeout_ms`.
  std::optional<int> wait(int timeout_ms) {
    if (pid_ <= 0) return std::nullopt;
    std::optional<int> result;
    wait_until(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) result = status;
          return result.has_value();
        },
        timeout_ms);
    if (result) pid_ = -1;
    return result;
  }

  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  void kill_and_reap() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (wait(3000)) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// True once `pid` exited. A daemon is not our child: after exiting it stays a zombie until its
// new parent (init or a subreaper) reaps it, so a zombie counts as gone.
inline bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  const std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  return paren == std::string::npos || (paren + 2 < stat.size() && stat[paren + 2] == 'Z');
}

// Kills a process we did not fork (a daemon) when the guard goes out of scope.
class PidGuard {
 public:
  explicit PidGuard(pid_t pid = -1) : pid_(pid) {}
  PidGuard(const PidGuard&) = delete;
  PidGuard& operator=(const PidGuard&) = delete;
  ~PidGuard() {
    if (pid_ > 0 && !process_gone(pid_)) {
      ::kill(pid_, SIGTERM);
      if (!wait_until([&] { return process_gone(pid_); }, 3000)) ::kill(pid_, SIGKILL);
    }
  }
  void set(pid_t pid) { pid_ = pid; }
  void release() { pid_ = -1; }

 private:
  pid_t pid_;
};

// Anonymous shared memory of `size` bytes for an in-process server.
inline rpc::UniqueFd make_memfd(std::uint64_t size) {
  rpc::UniqueFd fd(::memfd_create("ivshmem-test", MFD_CLOEXEC));
  if (fd.valid() && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) fd.reset();
  return fd;
}

// An IvshmemServer running on its own thread; stopped and joined on destruction.
class ServerThread {
 public:
  explicit ServerThread(host::IvshmemServerConfig cfg, std::uint64_t shm_size = 1 << 20) {
    auto s = host::IvshmemServer::start(std::move(cfg), make_memfd(shm_size));
    if (!s) {
      error_ = s.error().message;
      return;
    }
    server_ = std::move(*s);
    thread_ = std::thread([this] { status_ = server_->run(); });
  }
  ~ServerThread() { stop(); }
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;

  bool ok() const { return server_ != nullptr; }
  const std::string& error() const { return error_; }
  void stop() {
    if (thread_.joinable()) {
      server_->request_stop();
      thread_.join();
    }
    server_.reset();
  }

 private:
  std::unique_ptr<host::IvshmemServer> server_;
  std::thread thread_;
  rpc::Status status_;
  std::string error_;
};

// Lifts the soft fd limit to the hard one: tests with many peers hold many eventfds.
inline void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace tosec::test
