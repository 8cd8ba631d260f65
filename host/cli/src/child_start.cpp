#include "tosec/cli/child_start.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <thread>

#include "tosec/cli/launch.h"
#include "tosec/cli/process.h"

namespace tosec::cli {

using rpc::Error;
using rpc::Status;

namespace {

std::string timestamp() {
  char buf[64];
  const time_t now = ::time(nullptr);
  struct tm tm {};
  ::gmtime_r(&now, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Appends a header line and returns the offset after it (-1 on error).
long log_header(int fd, const std::vector<std::string>& argv) {
  std::string line = "---- " + timestamp() + " tosec: starting";
  for (const auto& a : argv) line += " " + a;
  line += "\n";
  [[maybe_unused]] auto n = ::write(fd, line.data(), line.size());
  return static_cast<long>(::lseek(fd, 0, SEEK_END));
}

}  // namespace

rpc::Result<pid_t> spawn_logged(std::vector<std::string> argv, const std::string& log_path,
                                bool die_with_parent, long* offset) {
  const int log = open_log(log_path);
  if (log < 0) return rpc::errno_error("cannot open log " + log_path);
  SpawnSpec spec;
  spec.argv = std::move(argv);
  spec.env = current_environment();
  *offset = log_header(log, spec.argv);
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  spec.stdin_fd = null;
  spec.stdout_fd = log;
  spec.stderr_fd = log;
  spec.new_process_group = true;
  spec.die_with_parent = die_with_parent;
  auto pid = spawn(spec);
  ::close(log);
  if (null >= 0) ::close(null);
  if (!pid) return Error{pid.error().code, "cannot start " + pid.error().message};
  return *pid;
}

Status wait_ready(pid_t* pid, const std::string& what, const std::string& waiting_for,
                  const std::string& log, long offset, std::chrono::milliseconds timeout,
                  const std::function<bool()>& ready, const std::function<void()>& stop) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready()) {
    int status = 0;
    if (try_reap(*pid, &status)) {
      *pid = -1;
      return Error{EIO, what + " " + describe_wait_status(status) +
                            " before it was ready; end of " + log + ":\n" +
                            tail_file(log, offset, 15)};
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      stop();
      return Error{ETIMEDOUT, what + " did not " + waiting_for + " within " +
                                  std::to_string(timeout.count() / 1000) + " s; end of " + log +
                                  ":\n" + tail_file(log, offset, 15)};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return {};
}

bool socket_accepts(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

bool log_has_line(const std::string& path, long offset, const std::string& needle) {
  std::ifstream in(path);
  if (!in) return false;
  in.seekg(offset);
  std::string line;
  while (std::getline(in, line)) {
    if (line == needle) return true;
  }
  return false;
}

}  // namespace tosec::cli
