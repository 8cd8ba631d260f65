// The parsed form of an ACL rules file and the first-match decision over a StreamInfo.
// Parsing happens once at load; match() is read-only and safe from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::acl {

enum class RuleAction : std::uint8_t { kAllow, kDeny, kAlert };

struct Cidr {
  std::uint8_t family = 0;  // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> addr{};
  unsigned prefix = 0;  // bits

  bool contains(const Endpoint& e) const;
};

struct PortRange {
  std::uint16_t lo = 0;
  std::uint16_t hi = 65535;
  bool contains(std::uint16_t p) const { return p >= lo && p <= hi; }
};

enum class ConnDirection : std::uint8_t { kAny, kOut, kIn };  // out: the guest connected

struct Rule {
  RuleAction action = RuleAction::kAllow;
  std::uint8_t protocol = 0;  // 0 = any, else IPPROTO_TCP / IPPROTO_UDP
  std::optional<Cidr> local, remote;
  std::optional<PortRange> lport, rport;
  std::optional<std::string> guest;
  ConnDirection direction = ConnDirection::kAny;
  std::string msg;    // from msg "..."; else the rule's text
  unsigned line = 0;  // 1-based line in the file: the rule id is "acl:<line>"

  bool matches(const StreamInfo& s) const;
};

struct RuleSet {
  std::vector<Rule> rules;
  std::optional<RuleAction> default_action;  // set by a `default` line
};

// Parses the text of a rules file; `source` names it in errors ("acl.rules:3: ...").
rpc::Result<RuleSet> parse_rules(std::string_view text, const std::string& source);

// The first rule that matches, or nullptr (then the default applies).
const Rule* first_match(const RuleSet& set, const StreamInfo& s);

}  // namespace tosec::svm::acl
