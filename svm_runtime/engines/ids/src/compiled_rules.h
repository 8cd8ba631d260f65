// The immutable product of loading a rule set: the rules, their Hyperscan prefilter databases
// (one per flow direction) and PCRE2 programs, plus what the stream inspector needs to know about
// each rule to verify it cheaply. Built once, then shared read-only by every thread and stream.
#pragma once

#include <hs.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pcre_program.h"
#include "tosec/svm/engines/ids_rule.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::ids {

struct IdsOptions {
  std::size_t window_bytes = 64 * 1024;
  std::uint32_t verify_budget = 10000;
  std::uint32_t pcre_match_limit = 100000;
};

struct CompiledElement {
  std::shared_ptr<const PcreProgram> pcre;  // kPcre only
  std::string folded;                       // nocase content, lowercased
  // True when the next elements' ranges are measured from this element's end, so a failed tail
  // is worth retrying at a later occurrence of this element (backtracking).
  bool later_depends = false;
};

struct CompiledRule {
  Rule rule;
  std::vector<CompiledElement> elements;  // parallel to rule.elements
  Action action = Action::kAlert;
  bool is_pass = false;
  // The prefilter hit alone proves the rule (one content, offset/depth encoded in Hyperscan).
  bool exact = false;
  // After a prefilter hit ending at E, every byte the rule can still need ends before E + reach.
  // Unbounded rules stay candidates while the hit is inside the retained window.
  bool bounded = false;
  std::uint64_t reach = 0;
  std::string rule_id;  // "sid:<sid>"
};

class CompiledRules {
 public:
  static rpc::Result<std::shared_ptr<const CompiledRules>> build(std::vector<Rule> rules,
                                                                 const IdsOptions& options);
  ~CompiledRules();
  CompiledRules(const CompiledRules&) = delete;
  CompiledRules& operator=(const CompiledRules&) = delete;

  const std::vector<CompiledRule>& rules() const { return rules_; }
  // Null when no rule can apply to that flow direction.
  const hs_database_t* database(Flow flow) const { return dbs_[static_cast<int>(flow)]; }
  const IdsOptions& options() const { return options_; }

  // Header match (protocol, addresses, ports, flow option) of a rule for one direction of a stream.
  static bool header_applies(const Rule& rule, const StreamInfo& info, Flow flow);

 private:
  CompiledRules() = default;
  std::vector<CompiledRule> rules_;
  hs_database_t* dbs_[2] = {nullptr, nullptr};
  IdsOptions options_;
};

}  // namespace tosec::svm::ids
