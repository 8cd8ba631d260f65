#include "tosec/cli/platform.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tosec/cli/process.h"

namespace tosec::cli {

using rpc::Error;
using rpc::Status;

GuestPaths guest_paths(const std::string& runtime_dir, const std::string& guest,
                       const std::string& shm_name) {
  GuestPaths p;
  p.dir = runtime_dir + "/guests/" + guest;
  p.ivshmem_socket = p.dir + "/ivshmem.sock";
  p.sidecar_socket = p.dir + "/sidecar.sock";
  p.status_socket = p.dir + "/status.sock";
  p.ivshmem_log = runtime_dir + "/logs/" + guest + ".ivshmem.log";
  p.tovm_log = runtime_dir + "/logs/" + guest + ".tovm.log";
  p.shm_name = shm_name;
  return p;
}

std::string persistent_shm_name(const std::string& runtime_dir, const std::string& guest) {
  std::uint32_t h = 2166136261U;  // FNV-1a: a short, stable tag for the runtime dir
  for (char c : runtime_dir) h = (h ^ static_cast<unsigned char>(c)) * 16777619U;
  char tag[9];
  std::snprintf(tag, sizeof tag, "%08x", h);
  return "/tosec-" + guest + "-" + tag;
}

std::uint64_t guest_region_size(const rpc::GuestChannelConfig& cfg) {
  return rpc::guest_region_layout(cfg).pow2_size();
}

std::vector<std::string> ivshmem_server_argv(const Binaries& bin, const GuestConfig&,
                                             const GuestPaths& paths, std::uint64_t size) {
  return {bin.ivshmem_server,   "-F", "-S", paths.ivshmem_socket, "-M", paths.shm_name, "-l",
          std::to_string(size), "-n", "1"};
}

std::vector<std::string> ivshmem_server_argv(const Binaries& bin, const GuestConfig& guest,
                                             const GuestPaths& paths) {
  return ivshmem_server_argv(bin, guest, paths, guest_region_size(guest.channel));
}

std::vector<std::string> tovm_argv(const Binaries& bin, const TovmConfig& tovm,
                                   const GuestConfig& guest, const GuestPaths& paths) {
  const auto& c = guest.channel;
  return {bin.tovm,
          "--guest",
          guest.name,
          "--ivshmem",
          paths.ivshmem_socket,
          "--sidecar",
          paths.sidecar_socket,
          "--status",
          paths.status_socket,
          "--lanes",
          std::to_string(c.lanes),
          "--max-sockets",
          std::to_string(c.max_sockets),
          "--ring-slots",
          std::to_string(c.ring_slots),
          "--socket-rx-entries",
          std::to_string(c.socket_rx_entries),
          "--chunk-size",
          std::to_string(c.chunk_size),
          "--tx-chunks-per-lane",
          std::to_string(c.tx_chunks_per_lane),
          "--rx-chunks",
          std::to_string(c.rx_chunks),
          "--workers",
          std::to_string(tovm.workers),
          "--spin-ns",
          std::to_string(tovm.spin_ns),
          "--log-level",
          tovm.log_level};
}

Status make_dirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error{ec.value(), "cannot create directory " + dir + ": " + ec.message()};
  return {};
}

void remove_tree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

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

}  // namespace

GuestPlatform::GuestPlatform(Binaries bin, TovmConfig tovm, GuestConfig guest, GuestPaths paths)
    : bin_(std::move(bin)),
      tovm_(std::move(tovm)),
      guest_(std::move(guest)),
      paths_(std::move(paths)) {}

GuestPlatform::~GuestPlatform() {
  if (server_pid_ > 0 || tovm_pid_ > 0) stop();
}

// Starts argv in its own process group with stdin from /dev/null and stdout+stderr appended to
// `log_path` after a header; *offset is where this run's output starts in the log.
rpc::Result<pid_t> GuestPlatform::spawn_logged(std::vector<std::string> argv,
                                               const std::string& log_path, long* offset) {
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
  spec.die_with_parent = die_with_parent_;
  auto pid = spawn(spec);
  ::close(log);
  if (null >= 0) ::close(null);
  if (!pid) return Error{pid.error().code, "cannot start " + pid.error().message};
  return *pid;
}

Status GuestPlatform::start_server(std::chrono::milliseconds timeout) {
  if (auto s = make_dirs(paths_.dir); !s) return s;
  if (auto s = make_dirs(std::filesystem::path(paths_.ivshmem_log).parent_path()); !s) return s;
  ::unlink(paths_.ivshmem_socket.c_str());  // stale socket of a crashed server
  long offset = 0;
  auto pid = spawn_logged(ivshmem_server_argv(bin_, guest_, paths_), paths_.ivshmem_log, &offset);
  if (!pid) return pid.error();
  server_pid_ = *pid;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!socket_accepts(paths_.ivshmem_socket)) {
    int status = 0;
    if (try_reap(server_pid_, &status)) {
      server_pid_ = -1;
      return Error{EIO, "guest " + guest_.name + ": " + kIvshmemServerName + " " +
                            describe_wait_status(status) + " before it was ready; end of " +
                            paths_.ivshmem_log + ":\n" + tail_file(paths_.ivshmem_log, offset, 15)};
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      stop_server();
      return Error{ETIMEDOUT, "guest " + guest_.name + ": " + kIvshmemServerName +
                                  " did not listen on " + paths_.ivshmem_socket + " within " +
                                  std::to_string(timeout.count() / 1000) + " s; end of " +
                                  paths_.ivshmem_log + ":\n" +
                                  tail_file(paths_.ivshmem_log, offset, 15)};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return {};
}

Status GuestPlatform::start_tovm(std::chrono::milliseconds timeout) {
  if (auto s = make_dirs(paths_.dir); !s) return s;
  ::unlink(paths_.sidecar_socket.c_str());
  ::unlink(paths_.status_socket.c_str());
  long offset = 0;
  auto pid = spawn_logged(tovm_argv(bin_, tovm_, guest_, paths_), paths_.tovm_log, &offset);
  if (!pid) return pid.error();
  tovm_pid_ = *pid;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!log_has_line(paths_.tovm_log, offset, kTovmReadyLine)) {
    int status = 0;
    if (try_reap(tovm_pid_, &status)) {
      tovm_pid_ = -1;
      return Error{EIO, "guest " + guest_.name + ": " + kTovmName + " " +
                            describe_wait_status(status) + " before it was ready; end of " +
                            paths_.tovm_log + ":\n" + tail_file(paths_.tovm_log, offset, 15)};
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      stop_tovm();
      return Error{ETIMEDOUT, "guest " + guest_.name + ": " + kTovmName + " did not print '" +
                                  kTovmReadyLine + "' within " +
                                  std::to_string(timeout.count() / 1000) + " s; end of " +
                                  paths_.tovm_log + ":\n" + tail_file(paths_.tovm_log, offset, 15)};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return {};
}

void GuestPlatform::stop_tovm() {
  stop_processes({&tovm_pid_}, kStopGrace);
  ::unlink(paths_.sidecar_socket.c_str());
  ::unlink(paths_.status_socket.c_str());
}

void GuestPlatform::stop_server() {
  stop_processes({&server_pid_}, kStopGrace);
  // A killed server cannot clean up: the socket and the shm object are ours to remove.
  ::unlink(paths_.ivshmem_socket.c_str());
  if (!paths_.shm_name.empty()) ::shm_unlink(paths_.shm_name.c_str());
}

bool GuestPlatform::forget(pid_t pid) {
  if (pid <= 0) return false;
  if (pid == server_pid_) {
    server_pid_ = -1;
    return true;
  }
  if (pid == tovm_pid_) {
    tovm_pid_ = -1;
    return true;
  }
  return false;
}

}  // namespace tosec::cli
