// PolicyMatcher: which chain inspects a new stream (docs/svm.md, docs/config.md [[policy]]).
//
// Built once from the topology file the CLI writes (tosec.v1.Topology); match() runs at every
// connect/accept, so it is a linear scan over the guest's policies in priority order (a guest has
// a handful), with no allocation.
//
// Semantics: Policy.direction is the direction of the *connection*: OUTGOING = the guest
// connected, INCOMING = the guest accepted; UNSPECIFIED matches both. local/remote prefixes and
// port ranges are the guest's end and the peer's end. Unset fields match everything. The highest
// priority wins; ties go to the earlier policy. No match: the stream is not inspected.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"
#include "tosec/v1/control.pb.h"

namespace tosec::tovm {

struct ChainChoice {
  std::uint32_t chain_id;
  std::string chain_name;
};

class PolicyMatcher {
 public:
  // Validates the topology's policies of `guest` (each names a known chain, prefixes have a
  // valid length) and keeps them sorted by priority. Errors name the policy.
  static rpc::Result<PolicyMatcher> create(const tosec::v1::Topology& topology,
                                           const std::string& guest);

  std::optional<ChainChoice> match(const svm::StreamInfo& stream) const;
  bool empty() const { return rules_.empty(); }

 private:
  struct Prefix {
    std::uint8_t family = 0;  // 0 = any
    std::uint8_t addr[16] = {};
    std::uint32_t len = 0;
  };
  struct Rule {
    std::uint32_t priority = 0;
    int direction = 0;  // 0 any, 1 outgoing, 2 incoming
    int protocol = 0;   // 0 any, else IANA number
    Prefix local, remote;
    std::uint32_t lport_lo = 0, lport_hi = 0xFFFF;
    std::uint32_t rport_lo = 0, rport_hi = 0xFFFF;
    ChainChoice chain;
  };
  static bool prefix_matches(const Prefix& p, const svm::Endpoint& e);
  std::vector<Rule> rules_;
};

}  // namespace tosec::tovm
