// HostControl (rpc/proto/hostd.proto): tosec-hostd's gRPC service on <runtime_dir>/hostd.sock.
//
// Reads (Status, GetTopology, GetGuestStatus, GetStats, StreamAlerts) and live changes (SetChain,
// AddPolicy, RemovePolicy, ApplyTopology). A change is validated on a copy of the config, then,
// under the supervisor's mutex: each inspected guest's topology file is replaced atomically with
// the next generation, the TOE(s) get SIGHUP, and the call returns once every guest's TOE status
// reports that generation (or the TOE's rejection). A TOE whose status has no
// "topology_generation" cannot reload: it gets no SIGHUP (its default would kill it) and the
// reply carries a warning (the change takes effect at its next restart). Errors are gRPC codes:
// INVALID_ARGUMENT (a bad field, named), NOT_FOUND (unknown policy), FAILED_PRECONDITION (needs
// `tosec down`/`up`, or the platform is stopping).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tosec/cli/config.h"
#include "tosec/cli/status.h"
#include "tosec/hostd/supervisor.h"
#include "tosec/v1/hostd.grpc.pb.h"

namespace tosec::hostd {

// errno -> gRPC code (EINVAL INVALID_ARGUMENT, ENOENT NOT_FOUND, EBUSY FAILED_PRECONDITION,
// others INTERNAL).
grpc::StatusCode grpc_code(int err);

class HostControlService final : public tosec::v1::HostControl::Service {
 public:
  HostControlService(Supervisor& sup, cli::Config cfg, std::string data_dir);

  void set_metrics_address(std::string a) { metrics_address_ = std::move(a); }
  void set_stopping() { stopping_.store(true); }
  // How long a change waits for the TOEs to report the new generation.
  void set_reload_timeout(std::chrono::milliseconds t) { reload_timeout_ = t; }
  std::vector<cli::GuestStatus> guest_status();
  std::uint64_t generation();

  grpc::Status Status(grpc::ServerContext*, const tosec::v1::StatusRequest*,
                      tosec::v1::StatusResponse*) override;
  grpc::Status GetTopology(grpc::ServerContext*, const tosec::v1::GetTopologyRequest*,
                           tosec::v1::Topology*) override;
  grpc::Status ApplyTopology(grpc::ServerContext*, const tosec::v1::ApplyTopologyRequest*,
                             tosec::v1::ApplyTopologyResponse*) override;
  grpc::Status SetChain(grpc::ServerContext*, const tosec::v1::SetChainRequest*,
                        tosec::v1::SetChainResponse*) override;
  grpc::Status AddPolicy(grpc::ServerContext*, const tosec::v1::AddPolicyRequest*,
                         tosec::v1::AddPolicyResponse*) override;
  grpc::Status RemovePolicy(grpc::ServerContext*, const tosec::v1::RemovePolicyRequest*,
                            tosec::v1::RemovePolicyResponse*) override;
  grpc::Status GetStats(grpc::ServerContext*, const tosec::v1::GetStatsRequest*,
                        tosec::v1::Stats*) override;
  grpc::Status StreamAlerts(grpc::ServerContext*, const tosec::v1::StreamAlertsRequest*,
                            grpc::ServerWriter<tosec::v1::Alert>*) override;
  grpc::Status GetGuestStatus(grpc::ServerContext*, const tosec::v1::GetGuestStatusRequest*,
                              tosec::v1::GetGuestStatusResponse*) override;

 private:
  // edit(running config) -> the next config, validated; it becomes the running one (see the
  // header comment). dry_run: checks only. *generation: the one in force afterwards.
  using Edit = std::function<rpc::Result<cli::Config>(const cli::Config&)>;
  grpc::Status commit(const Edit& edit, bool dry_run, std::uint64_t* generation,
                      std::vector<std::string>* warnings);
  // SIGHUP to the TOEs of the inspected guests and wait for `gen` (under the mutex).
  grpc::Status reload(const std::vector<std::string>& guests, std::uint64_t gen,
                      std::vector<std::string>* warnings);

  Supervisor& sup_;
  const std::string runtime_dir_;  // fixed for the daemon's life
  cli::Config cfg_;                // the running config, under sup_.mutex()
  std::string data_dir_;
  std::string metrics_address_;
  std::uint64_t generation_ = 1;  // cli::plan_inspection() starts at 1
  std::int64_t started_unix_ns_;
  std::atomic<bool> stopping_{false};
  std::chrono::milliseconds reload_timeout_{10'000};
};

}  // namespace tosec::hostd
