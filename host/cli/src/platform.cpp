#include "tosec/cli/platform.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "tosec/cli/child_start.h"
#include "tosec/cli/process.h"
#include "tosec/rpc/cpu_list.h"

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

InspectionPaths inspection_paths(const std::string& runtime_dir, const std::string& guest,
                                 const std::string& shm_name, const std::string& alert_log) {
  InspectionPaths p;
  const std::string dir = runtime_dir + "/guests/" + guest;
  p.ivshmem_socket = dir + "/inspect.sock";
  p.topology_file = dir + "/topology.pb";
  p.shm_name = shm_name.empty() ? std::string() : shm_name + "-inspect";
  p.log_dir = runtime_dir + "/logs";
  p.alert_log = alert_log.empty() ? p.log_dir + "/eve.json" : alert_log;
  p.ivshmem_log = p.log_dir + "/" + guest + ".inspect.ivshmem.log";
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

std::uint32_t guest_doorbell_vectors(const GuestConfig& guest) {
  return guest.in_vm ? guest.channel.lanes : 1;
}

std::vector<std::string> ivshmem_server_argv(const Binaries& bin, const GuestConfig& guest,
                                             const GuestPaths& paths, std::uint64_t size) {
  return {bin.ivshmem_server,
          "-F",
          "-S",
          paths.ivshmem_socket,
          "-M",
          paths.shm_name,
          "-l",
          std::to_string(size),
          "-n",
          std::to_string(guest_doorbell_vectors(guest))};
}

std::vector<std::string> ivshmem_server_argv(const Binaries& bin, const GuestConfig& guest,
                                             const GuestPaths& paths) {
  return ivshmem_server_argv(bin, guest, paths, guest_region_size(guest.channel));
}

namespace {

// The guest's channel geometry and sockets, the flags of a guest group that every mode has.
std::vector<std::string> tovm_channel_args(const GuestConfig& guest, const GuestPaths& paths) {
  const auto& c = guest.channel;
  return {"--guest",
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
          std::to_string(c.rx_chunks)};
}

}  // namespace

std::vector<std::string> tovm_guest_args(const GuestConfig& guest, const GuestPaths& paths) {
  std::vector<std::string> args = tovm_channel_args(guest, paths);
  if (guest.in_vm) args.emplace_back("--vm-agent");  // the last lane is the in-guest agent's
  return args;
}

std::vector<std::string> tovm_process_args(const TovmConfig& tovm) {
  std::vector<std::string> args = {"--workers",   std::to_string(tovm.workers),
                                   "--spin-ns",   std::to_string(tovm.spin_ns),
                                   "--log-level", tovm.log_level};
  if (!tovm.cpus.empty()) {
    args.emplace_back("--cpus");
    args.push_back(tovm.cpus);
  }
  return args;
}

TovmConfig tovm_for_guest(const TovmConfig& tovm, std::size_t guest_index) {
  if (tovm.mode != "per-guest" || tovm.cpus.empty()) return tovm;
  auto cpus = rpc::parse_cpu_list(tovm.cpus);
  if (!cpus) return tovm;  // the config check refused it already; tosec-tovm will say why
  TovmConfig one = tovm;
  one.cpus = std::to_string(rpc::cpu_for(guest_index, *cpus));
  return one;
}

std::vector<std::string> tovm_argv(const Binaries& bin, const TovmConfig& tovm,
                                   const GuestConfig& guest, const GuestPaths& paths) {
  std::vector<std::string> argv = {bin.tovm};
  for (auto& a : tovm_guest_args(guest, paths)) argv.push_back(std::move(a));
  for (auto& a : tovm_process_args(tovm)) argv.push_back(std::move(a));
  return argv;
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

GuestPlatform::GuestPlatform(Binaries bin, TovmConfig tovm, GuestConfig guest, GuestPaths paths)
    : bin_(std::move(bin)),
      tovm_(std::move(tovm)),
      guest_(std::move(guest)),
      paths_(std::move(paths)) {}

GuestPlatform::~GuestPlatform() {
  const bool svms = std::any_of(svm_pids_.begin(), svm_pids_.end(), [](pid_t p) { return p > 0; });
  if (server_pid_ > 0 || tovm_pid_ > 0 || inspect_server_pid_ > 0 || svms) stop();
}

rpc::Result<pid_t> GuestPlatform::spawn_logged(std::vector<std::string> argv,
                                               const std::string& log_path, long* offset) {
  return cli::spawn_logged(std::move(argv), log_path, die_with_parent_, offset);
}

Status GuestPlatform::start_server(std::chrono::milliseconds timeout) {
  if (auto s = make_dirs(paths_.dir); !s) return s;
  if (auto s = make_dirs(std::filesystem::path(paths_.ivshmem_log).parent_path()); !s) return s;
  ::unlink(paths_.ivshmem_socket.c_str());  // stale socket of a crashed server
  long offset = 0;
  auto pid = spawn_logged(ivshmem_server_argv(bin_, guest_, paths_), paths_.ivshmem_log, &offset);
  if (!pid) return pid.error();
  server_pid_ = *pid;
  return wait_ready(
      &server_pid_, "guest " + guest_.name + ": " + kIvshmemServerName,
      "listen on " + paths_.ivshmem_socket, paths_.ivshmem_log, offset, timeout,
      [&] { return socket_accepts(paths_.ivshmem_socket); }, [&] { stop_server(); });
}

rpc::Result<std::vector<std::string>> GuestPlatform::prepare_tovm_group() {
  if (auto s = make_dirs(paths_.dir); !s) return s.error();
  ::unlink(paths_.sidecar_socket.c_str());
  ::unlink(paths_.status_socket.c_str());
  auto args = tovm_guest_args(guest_, paths_);
  if (!inspection_.empty()) {
    if (auto s = write_topology(inspection_.topology, inspection_paths_.topology_file); !s) {
      return s.error();
    }
    for (const auto& a : {std::string("--inspect-ivshmem"), inspection_paths_.ivshmem_socket,
                          std::string("--topology"), inspection_paths_.topology_file,
                          std::string("--alert-log"), inspection_paths_.alert_log}) {
      args.push_back(a);
    }
  }
  return args;
}

Status GuestPlatform::start_tovm(std::chrono::milliseconds timeout) {
  auto group = prepare_tovm_group();
  if (!group) return group.error();
  std::vector<std::string> argv = {bin_.tovm};
  for (auto& a : *group) argv.push_back(std::move(a));
  for (auto& a : tovm_process_args(tovm_)) argv.push_back(std::move(a));
  long offset = 0;
  auto pid = spawn_logged(std::move(argv), paths_.tovm_log, &offset);
  if (!pid) return pid.error();
  tovm_pid_ = *pid;
  return wait_ready(
      &tovm_pid_, "guest " + guest_.name + ": " + kTovmName,
      std::string("print '") + kTovmReadyLine + "'", paths_.tovm_log, offset, timeout,
      [&] { return log_has_line(paths_.tovm_log, offset, kTovmReadyLine); }, [&] { stop_tovm(); });
}

void GuestPlatform::set_inspection(InspectionPlan plan, InspectionPaths paths) {
  inspection_ = std::move(plan);
  inspection_paths_ = std::move(paths);
  svm_pids_.assign(inspection_.svms.size(), -1);
}

Status GuestPlatform::start_inspection_server(std::chrono::milliseconds timeout) {
  const auto& ip = inspection_paths_;
  if (auto s = make_dirs(paths_.dir); !s) return s;
  if (auto s = make_dirs(ip.log_dir); !s) return s;
  ::unlink(ip.ivshmem_socket.c_str());
  // Vectors: one doorbell per mesh node (the TOE and each SVM address each other by peer id).
  std::vector<std::string> argv = {bin_.ivshmem_server,
                                   "-F",
                                   "-S",
                                   ip.ivshmem_socket,
                                   "-M",
                                   ip.shm_name,
                                   "-l",
                                   std::to_string(kInspectionRegionSize),
                                   "-n",
                                   std::to_string(kInspectionDoorbellVectors)};
  long offset = 0;
  auto pid = spawn_logged(std::move(argv), ip.ivshmem_log, &offset);
  if (!pid) return pid.error();
  inspect_server_pid_ = *pid;
  return wait_ready(
      &inspect_server_pid_, "guest " + guest_.name + ": inspection " + kIvshmemServerName,
      "listen on " + ip.ivshmem_socket, ip.ivshmem_log, offset, timeout,
      [&] { return socket_accepts(ip.ivshmem_socket); },
      [&] { stop_processes({&inspect_server_pid_}, kStopGrace); });
}

Status GuestPlatform::start_svm(std::size_t index, std::chrono::milliseconds timeout) {
  if (index >= inspection_.svms.size()) return Error{EINVAL, "no SVM #" + std::to_string(index)};
  if (!is_executable(bin_.svm)) {
    return Error{ENOENT, std::string(kSvmName) + " not found at " + bin_.svm +
                             " (needed by the guest's chains; set TOSEC_BIN_DIR)"};
  }
  const SvmInstance& svm = inspection_.svms[index];
  const std::string log =
      inspection_paths_.log_dir + "/" + guest_.name + ".svm." + svm.svm.name + ".log";
  long offset = 0;
  auto pid = spawn_logged(svm_argv(bin_.svm, svm, inspection_paths_), log, &offset);
  if (!pid) return pid.error();
  pid_t* slot = &svm_pids_[index];
  *slot = *pid;
  return wait_ready(
      slot, "guest " + guest_.name + ": svm " + svm.svm.name,
      std::string("print '") + kSvmReadyLine + "'", log, offset, timeout,
      [&] { return log_has_line(log, offset, kSvmReadyLine); },
      [&] { stop_processes({slot}, kStopGrace); });
}

void GuestPlatform::stop_svms() {
  std::vector<pid_t*> pids;
  for (auto& p : svm_pids_) pids.push_back(&p);
  if (!pids.empty()) stop_processes(pids, kStopGrace);
}

int GuestPlatform::svm_index(pid_t pid) const {
  if (pid <= 0) return -1;
  for (std::size_t i = 0; i < svm_pids_.size(); ++i) {
    if (svm_pids_[i] == pid) return static_cast<int>(i);
  }
  return -1;
}

void GuestPlatform::stop_tovm() {
  stop_processes({&tovm_pid_}, kStopGrace);
  ::unlink(paths_.sidecar_socket.c_str());
  ::unlink(paths_.status_socket.c_str());
}

void GuestPlatform::stop_server() {
  stop_processes({&server_pid_, &inspect_server_pid_}, kStopGrace);
  // A killed server cannot clean up: the sockets and the shm objects are ours to remove.
  ::unlink(paths_.ivshmem_socket.c_str());
  if (!paths_.shm_name.empty()) ::shm_unlink(paths_.shm_name.c_str());
  if (!inspection_.empty()) {
    ::unlink(inspection_paths_.ivshmem_socket.c_str());
    ::unlink(inspection_paths_.topology_file.c_str());
    if (!inspection_paths_.shm_name.empty()) ::shm_unlink(inspection_paths_.shm_name.c_str());
  }
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
  if (pid == inspect_server_pid_) {
    inspect_server_pid_ = -1;
    return true;
  }
  if (const int i = svm_index(pid); i >= 0) {
    svm_pids_[static_cast<std::size_t>(i)] = -1;
    return true;
  }
  return false;
}

}  // namespace tosec::cli
