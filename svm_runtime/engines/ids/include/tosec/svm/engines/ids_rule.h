// The rule model of the IDS engine and its parser (a Suricata/Snort subset).
//
// parse_ids_rules() turns rule text into Rules and rejects anything outside the subset with
// "<file>:<line>: <what> in sid <sid>", so an operator never runs a rule that silently means
// something else than it says. It checks syntax and structure only; the engine build
// (make_ids_engine) also compiles every pattern and reports failures the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::ids {

enum class RuleAction : std::uint8_t { kAlert, kDrop, kReject, kPass };
enum class RuleProtocol : std::uint8_t { kIp, kTcp, kUdp, kHttp };  // http: the raw TCP stream
enum class RuleFlow : std::uint8_t { kAny, kToServer, kToClient };

// An address set: `any`, an address, a CIDR, a [list] of those, each possibly !negated.
struct AddressSpec {
  enum class Kind : std::uint8_t { kAny, kCidr, kList };
  Kind kind = Kind::kAny;
  bool negated = false;
  std::uint8_t family = 0;  // AF_INET or AF_INET6 for kCidr
  std::uint8_t addr[16] = {};
  unsigned prefix = 0;
  std::vector<AddressSpec> items;  // kList

  bool matches(const Endpoint& e) const;
};

// A port set: `any`, a port, a range lo:hi (either end optional), a [list], each possibly !negated.
struct PortSpec {
  enum class Kind : std::uint8_t { kAny, kRange, kList };
  Kind kind = Kind::kAny;
  bool negated = false;
  std::uint16_t lo = 0;
  std::uint16_t hi = 65535;
  std::vector<PortSpec> items;  // kList

  bool matches(std::uint16_t port) const;
};

// One payload condition, in rule order: a content or a pcre.
struct RuleElement {
  enum class Kind : std::uint8_t { kContent, kPcre };
  Kind kind = Kind::kContent;
  bool negated = false;  // content:! / pcre:!
  // kContent
  std::string bytes;  // decoded (|hex| and escapes resolved)
  bool nocase = false;
  bool fast_pattern = false;
  std::optional<std::uint32_t> offset;  // absolute, from the start of the stream direction
  std::optional<std::uint32_t> depth;
  std::optional<std::int32_t> distance;  // relative to the end of the previous match
  std::optional<std::uint32_t> within;
  // kPcre
  std::string pattern;     // the regex between the slashes, as written
  bool caseless = false;   // i
  bool dotall = false;     // s
  bool multiline = false;  // m
  bool extended = false;   // x
  bool relative = false;   // R (pcre) or distance/within present (content)

  bool is_relative() const { return relative || distance.has_value() || within.has_value(); }
};

struct Rule {
  std::string file;
  unsigned line = 0;
  RuleAction action = RuleAction::kAlert;
  RuleProtocol protocol = RuleProtocol::kTcp;
  AddressSpec src;
  PortSpec src_ports;
  AddressSpec dst;
  PortSpec dst_ports;
  bool bidirectional = false;  // <>
  RuleFlow flow = RuleFlow::kAny;
  std::uint32_t gid = 1;
  std::uint32_t sid = 0;
  std::uint32_t rev = 0;
  std::uint32_t priority = 0;  // 0: not given
  std::string msg;
  std::string classtype;
  std::vector<std::string> references;
  std::vector<std::string> metadata;
  std::vector<RuleElement> elements;
  std::size_t fast_pattern = 0;  // index into elements of the prefilter element

  // "file:line: " for messages.
  std::string where() const { return file + ":" + std::to_string(line) + ": "; }
};

// Parses rule text; `file` only names the source in messages. Sids must be unique within it.
rpc::Result<std::vector<Rule>> parse_ids_rules(std::string_view text, const std::string& file);

// Reads a rules file, or every *.rules file of a directory (sorted); sids unique across them.
rpc::Result<std::vector<Rule>> load_ids_rules(const std::string& path);

// Decodes a content string as written between the quotes: |hex| blocks and the escapes \" \; \\ \:.
rpc::Result<std::string> decode_ids_content(std::string_view raw);

}  // namespace tosec::svm::ids
