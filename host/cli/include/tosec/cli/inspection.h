// Inspection of one guest's traffic (docs/svm.md): from the config's [[svm]], [[chain]] and
// [[policy]] tables to what the platform runs — the SVM processes of that guest's chains, the
// topology file its TOE reads (tosec.v1.Topology, binary protobuf), and the command lines.
//
// Process mode runs one TOVM per guest (the guest's tosec-tovm) with its own inspection region
// and its own tosec-svm processes, numbered as mesh nodes 1..N in order of first use (node 0 is
// the TOE). Only SVMs that one of the guest's chains uses are started.
//
// Pure functions, unit-tested; platform.cpp starts the processes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/cli/config.h"
#include "tosec/cli/launch.h"
#include "tosec/rpc/status.h"
#include "tosec/v1/control.pb.h"

namespace tosec::cli {

inline constexpr const char* kSvmReadyLine = "tosec-svm: ready";
inline constexpr const char* kSvmName = "tosec-svm";
inline constexpr const char* kChainFlagName = "cli";  // chain/policy made by `run --chain`

struct SvmInstance {
  SvmConfig svm;       // rules resolved to the engine default when the config left it empty
  std::uint32_t node;  // mesh node id in the inspection region (1..N)
};

struct InspectionPlan {
  std::vector<SvmInstance> svms;
  tosec::v1::Topology topology;  // guests, svms (id = node), chains, policies of this guest
  bool empty() const { return svms.empty(); }
};

// The plan for `guest`: empty if no policy of that guest selects a chain. `data_dir` is where the
// shipped example rules live (examples/ of the source tree or the installed share dir).
rpc::Result<InspectionPlan> plan_inspection(const Config& cfg, const std::string& guest,
                                            const std::string& data_dir);

// `tosec run --chain SPEC`: SPEC is a comma list of steps, a step one SVM or a parallel group
// joined with '+' ("ids,waf+av"). Names are [[svm]] names of the config, or engine kinds
// ("ids", "waf", "av", "acl"), which add an SVM of that engine with its default rules. Adds chain
// "cli" with fail policy `fail` and a policy selecting it for every stream of `guest` (ahead of
// the config's own policies). Errors name the bad step.
rpc::Status apply_chain_option(Config& cfg, const std::string& guest, std::string_view spec,
                               const std::string& fail);

// The shipped rules of an engine under `data_dir` ("<data_dir>/rules/ids.rules", ...).
std::string default_rules(const std::string& engine, const std::string& data_dir);

// Where the shipped examples are: $TOSEC_DATA_DIR if set (then it must exist), else
// <self_dir>/../../../examples (build tree: build/<preset>/bin), else the examples/ of the source
// tree this binary was built from, else /usr/local/share/tosec.
rpc::Result<std::string> resolve_data_dir(const char* env_data_dir, const std::string& self_dir,
                                          const ExistsFn& exists = file_exists);

struct InspectionPaths {
  std::string ivshmem_socket;  // <guest dir>/inspect.sock
  std::string shm_name;        // shm object of the inspection region
  std::string topology_file;   // <guest dir>/topology.pb
  std::string alert_log;       // EVE-style JSON lines (default <runtime>/logs/eve.json)
  std::string log_dir;         // <runtime>/logs: <guest>.svm.<name>.log
  std::string ivshmem_log;     // <runtime>/logs/<guest>.inspect.ivshmem.log
};

std::vector<std::string> svm_argv(const std::string& svm_binary, const SvmInstance& svm,
                                  const InspectionPaths& paths);

// Config values -> Topology fields (the config parser validated the text already).
tosec::v1::EngineType engine_type(const std::string& engine);
void set_prefix(const std::string& cidr, tosec::v1::IpPrefix* out);
void set_ports(const std::string& spec, tosec::v1::PortRange* out);

// Writes the topology file (binary protobuf, replaced atomically by rename).
rpc::Status write_topology(const tosec::v1::Topology& topology, const std::string& path);

}  // namespace tosec::cli
