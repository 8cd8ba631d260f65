// The platform of one guest: its tosec-ivshmem-server (region + doorbells) and its tosec-tovm
// (the TOE), the files they use in the runtime directory, and starting/stopping them.
//
// Runtime directory layout (docs/cli.md), the same for `tosec up` and an embedded `tosec run`:
//   <dir>/supervisor.pid             `tosec up` only: pid of the supervisor (flock'ed while alive)
//   <dir>/logs/supervisor.log        `tosec up` only
//   <dir>/logs/<guest>.ivshmem.log   stdout+stderr of the guest's ivshmem server
//   <dir>/logs/<guest>.tovm.log      stdout+stderr of the guest's TOE
//   <dir>/guests/<guest>/ivshmem.sock, sidecar.sock, status.sock
//   with inspection (a policy of the guest selects a chain, docs/svm.md):
//   <dir>/guests/<guest>/inspect.sock, topology.pb   the inspection region's ivshmem server
//   <dir>/logs/<guest>.inspect.ivshmem.log, <guest>.svm.<name>.log
//   <dir>/logs/eve.json                              alerts, one JSON line each (EVE style)
//
// Contract: GuestPlatform owns its child pids; whoever reaps children centrally (the run loop,
// the supervisor) tells it with forget(). Start calls block until the child is ready or a
// timeout, and on failure the child is stopped and the error quotes the end of its log.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "tosec/cli/config.h"
#include "tosec/cli/inspection.h"
#include "tosec/cli/launch.h"
#include "tosec/rpc/status.h"

namespace tosec::cli {

inline constexpr const char* kTovmReadyLine = "tosec-tovm: ready";
inline constexpr std::chrono::milliseconds kReadyTimeout{10'000};
inline constexpr std::chrono::milliseconds kStopGrace{5'000};

struct GuestPaths {
  std::string dir;  // <runtime>/guests/<guest>
  std::string ivshmem_socket;
  std::string sidecar_socket;
  std::string status_socket;
  std::string ivshmem_log;
  std::string tovm_log;
  std::string shm_name;  // POSIX shm object of the guest region ("/tosec-...")
};

GuestPaths guest_paths(const std::string& runtime_dir, const std::string& guest,
                       const std::string& shm_name);
// Shm name of a `tosec up` guest: stable for (runtime_dir, guest), distinct across runtime dirs.
std::string persistent_shm_name(const std::string& runtime_dir, const std::string& guest);

// Size of the guest region: guest_region_layout(cfg).pow2_size().
std::uint64_t guest_region_size(const rpc::GuestChannelConfig& cfg);

// Doorbell vectors of a guest region, what its tosec-ivshmem-server gives each peer (`-n`):
// 1 in process mode; for a guest in a VM one per lane (vector 0 the in-guest agent's, 1.. the
// shim processes', rpc/agent_lane.h), and its <shmem> device must have as many MSI-X vectors.
std::uint32_t guest_doorbell_vectors(const GuestConfig& guest);
// The inspection region's: one doorbell per mesh node.
inline constexpr std::uint32_t kInspectionDoorbellVectors = 1;

std::vector<std::string> ivshmem_server_argv(const Binaries& bin, const GuestConfig& guest,
                                             const GuestPaths& paths);
// tosec-tovm's command line: a guest group (--guest NAME and the flags that belong to it) per
// guest served, and the process-wide flags (--workers, --cpus, --spin-ns, --log-level).
std::vector<std::string> tovm_guest_args(const GuestConfig& guest, const GuestPaths& paths);
std::vector<std::string> tovm_process_args(const TovmConfig& tovm);
// The [tovm] settings of guest `guest_index`'s own tosec-tovm in "per-guest" mode: its one
// worker gets the guest_index-th CPU of `cpus` (round robin), as worker i does in a shared TOE.
// Unchanged in "shared" mode or without cpus.
TovmConfig tovm_for_guest(const TovmConfig& tovm, std::size_t guest_index);
// The whole command line of a per-guest TOE: {bin.tovm} + the guest's group + process flags.
std::vector<std::string> tovm_argv(const Binaries& bin, const TovmConfig& tovm,
                                   const GuestConfig& guest, const GuestPaths& paths);
// Inspection paths of a guest; alert_log empty = <runtime>/logs/eve.json.
InspectionPaths inspection_paths(const std::string& runtime_dir, const std::string& guest,
                                 const std::string& shm_name, const std::string& alert_log = {});
inline constexpr std::uint64_t kInspectionRegionSize = std::uint64_t{64} << 20;

class GuestPlatform {
 public:
  GuestPlatform(Binaries bin, TovmConfig tovm, GuestConfig guest, GuestPaths paths);
  GuestPlatform(GuestPlatform&&) noexcept = default;
  GuestPlatform& operator=(GuestPlatform&&) noexcept = default;
  GuestPlatform(const GuestPlatform&) = delete;
  GuestPlatform& operator=(const GuestPlatform&) = delete;
  ~GuestPlatform();  // stops whatever still runs

  // Creates the guest's directory; starts the ivshmem server and waits for its socket.
  rpc::Status start_server(std::chrono::milliseconds timeout = kReadyTimeout);
  // Starts the TOE and waits for its ready line in its log.
  rpc::Status start_tovm(std::chrono::milliseconds timeout = kReadyTimeout);
  // Inspection: when set (non-empty plan), start() also starts the inspection region's ivshmem
  // server before the TOE and the SVMs after it (the TOE formats the region they attach).
  void set_inspection(InspectionPlan plan, InspectionPaths paths);
  rpc::Status start_inspection_server(std::chrono::milliseconds timeout = kReadyTimeout);
  // Starts one SVM (by its index in the plan) and waits for its ready line.
  rpc::Status start_svm(std::size_t index, std::chrono::milliseconds timeout = kReadyTimeout);
  // The guest's group of a TOE command line (with its inspection flags), after clearing the
  // sockets the TOE creates and writing the topology file: for start_tovm() and for a TOE
  // shared by several guests (shared_tovm.h).
  rpc::Result<std::vector<std::string>> prepare_tovm_group();
  // What must run before the TOE starts: the region's server and the inspection server.
  rpc::Status start_regions() {
    if (auto s = start_server(); !s) return s;
    if (!inspection_.empty()) return start_inspection_server();
    return {};
  }
  // What needs the TOE: the SVMs attach the inspection region it formats.
  rpc::Status start_svms() {
    for (std::size_t i = 0; i < inspection_.svms.size(); ++i) {
      if (auto s = start_svm(i); !s) return s;
    }
    return {};
  }
  // A guest with its own TOE process.
  rpc::Status start() {
    if (auto s = start_regions(); !s) return s;
    if (auto s = start_tovm(); !s) return s;
    return start_svms();
  }
  void stop_svms();
  void stop_tovm();
  void stop_server();  // also unlinks the shm objects and the guest's sockets
  void stop() {
    stop_svms();
    stop_tovm();
    stop_server();
  }
  // The SVM index of a child pid (-1 if it is not one of our SVMs).
  int svm_index(pid_t pid) const;
  const InspectionPlan& inspection() const { return inspection_; }
  // A live change (tosec-hostd): the topology the TOE is given from now on, also on a restart.
  void set_topology(tosec::v1::Topology topology) { inspection_.topology = std::move(topology); }
  const InspectionPaths& inspection_paths() const { return inspection_paths_; }
  // A child was reaped elsewhere: forget its pid. Returns true if it was one of ours.
  bool forget(pid_t pid);

  pid_t server_pid() const { return server_pid_; }
  pid_t tovm_pid() const { return tovm_pid_; }
  pid_t svm_pid(std::size_t index) const {
    return index < svm_pids_.size() ? svm_pids_[index] : -1;
  }
  const GuestConfig& guest() const { return guest_; }
  const GuestPaths& paths() const { return paths_; }
  // Process-group isolation and PDEATHSIG for the children (both true by default).
  void set_die_with_parent(bool v) { die_with_parent_ = v; }

 private:
  rpc::Result<pid_t> spawn_logged(std::vector<std::string> argv, const std::string& log_path,
                                  long* offset);
  Binaries bin_;
  TovmConfig tovm_;
  GuestConfig guest_;
  GuestPaths paths_;
  pid_t server_pid_ = -1;
  pid_t tovm_pid_ = -1;
  pid_t inspect_server_pid_ = -1;
  InspectionPlan inspection_;
  InspectionPaths inspection_paths_;
  std::vector<pid_t> svm_pids_;
  bool die_with_parent_ = true;
};

// Creates `dir` and its parents (mode 0755). Ok if it exists.
rpc::Status make_dirs(const std::string& dir);
// Removes a directory tree (best effort).
void remove_tree(const std::string& dir);

}  // namespace tosec::cli
