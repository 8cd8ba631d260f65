// Full verification of one rule after its prefilter hit: every content and pcre in rule order,
// with offset/depth (absolute stream offsets), distance/within and R (relative to the end of the
// previous positive match), negations, and backtracking over earlier occurrences when later
// elements are relative to them (as Suricata does). Runs on the retained window of one stream
// direction; bytes that have left the window cannot take part in a match.
#pragma once

#include <cstddef>
#include <cstdint>

#include "compiled_rules.h"
#include "pcre_program.h"

namespace tosec::svm::ids {

struct VerifyWindow {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  std::uint64_t base = 0;      // stream offset of data[0]
  bool end_of_stream = false;  // no more bytes will come: $ may match at the end, ranges close
};

class RuleVerifier {
 public:
  RuleVerifier(PcreThreadState& pcre, std::uint32_t budget) : pcre_(pcre), budget_(budget) {}

  bool matches(const CompiledRule& rule, const VerifyWindow& window);

 private:
  bool match_from(std::size_t k, std::uint64_t prev_end);
  // The allowed [lo, end_limit) span of a content, in stream offsets.
  static void content_range(const RuleElement& e, std::uint64_t prev_end, std::uint64_t& lo,
                            std::uint64_t& end_limit);

  PcreThreadState& pcre_;
  std::uint32_t budget_;
  std::uint32_t left_ = 0;
  const CompiledRule* rule_ = nullptr;
  VerifyWindow w_;
};

}  // namespace tosec::svm::ids
