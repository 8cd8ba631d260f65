// Live topology changes of tosec-hostd (docs/control-plane.md "Live changes"): from the running
// config and an operator's edit (SetChain, AddPolicy, RemovePolicy, ApplyTopology) to the
// per-guest tosec.v1.Topology files the TOEs re-read on SIGHUP.
//
// The config (cli::Config) stays the one model: an edit produces a new config, which is validated
// as a whole and then planned per guest with the same cli::plan_inspection() as `tosec up`. What
// cannot change live is rejected with a message naming it: guests and SVMs (their processes and
// inspection regions exist only from `tosec up`), and a chain that names an SVM not already
// running for that guest's TOE. Pure functions, unit-tested (tests/unit/hostd).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tosec/cli/config.h"
#include "tosec/cli/inspection.h"
#include "tosec/rpc/status.h"
#include "tosec/v1/control.pb.h"

namespace tosec::hostd {

// errno codes of the edit errors, mapped to gRPC codes by the service:
//   EINVAL -> INVALID_ARGUMENT, ENOENT -> NOT_FOUND, EBUSY -> FAILED_PRECONDITION.

// The whole platform as a Topology (GetTopology): guests, the TOVM, SVMs, chains, policies.
tosec::v1::Topology config_to_topology(const cli::Config& cfg, std::uint64_t generation);

// Chains and policies of `cfg` refer to what exists, names are unique, values are in range.
rpc::Status validate_chains_and_policies(const cli::Config& cfg);

// Edits; each returns the new config (validated) or the error naming the bad field.
rpc::Result<cli::Config> set_chain(const cli::Config& cfg, const tosec::v1::Chain& chain);
rpc::Result<cli::Config> add_policy(const cli::Config& cfg, const tosec::v1::Policy& policy);
rpc::Result<cli::Config> remove_policy(const cli::Config& cfg, const std::string& name);
// ApplyTopology: replaces chains and policies; guests, TOVMs and SVMs given must be the running
// ones (by name; empty lists mean "unchanged").
rpc::Result<cli::Config> apply_topology(const cli::Config& cfg, const tosec::v1::Topology& t);

// The topology file of one guest after a change: plan_inspection(cfg) with the SVMs (and their
// mesh node ids) of the running plan. EBUSY if the guest has no inspection region but now needs
// one, or a chain names an SVM the running plan does not have.
rpc::Result<tosec::v1::Topology> guest_topology(const cli::Config& cfg, const std::string& guest,
                                                const cli::InspectionPlan& running,
                                                const std::string& data_dir,
                                                std::uint64_t generation);

// `tosec topology`: chains and policies as a table, or (json) the Topology as protobuf JSON.
std::string render_topology(const tosec::v1::Topology& t, bool json);

// "ids,waf+av" -> chain steps (',' separates steps, '+' joins a parallel group).
rpc::Result<std::vector<std::vector<std::string>>> parse_chain_steps(const std::string& spec);

}  // namespace tosec::hostd
