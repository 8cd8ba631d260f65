#include "rule_verifier.h"

#include <cctype>
#include <cstring>
#include <limits>

namespace tosec::svm::ids {
namespace {

constexpr std::uint64_t kUnbounded = std::numeric_limits<std::uint64_t>::max();

// First index i in [from, last] where the needle starts, or SIZE_MAX.
std::size_t find_bytes(const std::uint8_t* hay, std::size_t from, std::size_t last,
                       const std::string& needle) {
  const std::size_t n = needle.size();
  const void* p = memmem(hay + from, last - from + n, needle.data(), n);
  return p == nullptr ? SIZE_MAX
                      : static_cast<std::size_t>(static_cast<const std::uint8_t*>(p) - hay);
}

std::size_t find_folded(const std::uint8_t* hay, std::size_t from, std::size_t last,
                        const std::string& folded) {
  const std::size_t n = folded.size();
  const auto first = static_cast<unsigned char>(folded[0]);
  for (std::size_t i = from; i <= last; ++i) {
    if (std::tolower(hay[i]) != first) continue;
    std::size_t j = 1;
    while (j < n && std::tolower(hay[i + j]) == static_cast<unsigned char>(folded[j])) ++j;
    if (j == n) return i;
  }
  return SIZE_MAX;
}

}  // namespace

bool RuleVerifier::matches(const CompiledRule& rule, const VerifyWindow& window) {
  rule_ = &rule;
  w_ = window;
  left_ = budget_;
  return match_from(0, 0);
}

void RuleVerifier::content_range(const RuleElement& e, std::uint64_t prev_end, std::uint64_t& lo,
                                 std::uint64_t& end_limit) {
  if (e.is_relative()) {
    const std::int64_t start = static_cast<std::int64_t>(prev_end) + e.distance.value_or(0);
    lo = start < 0 ? 0 : static_cast<std::uint64_t>(start);
    end_limit = e.within ? static_cast<std::uint64_t>(std::max<std::int64_t>(
                               0, start + static_cast<std::int64_t>(*e.within)))
                         : kUnbounded;
  } else {
    lo = e.offset.value_or(0);
    end_limit = e.depth ? lo + *e.depth : kUnbounded;
  }
}

bool RuleVerifier::match_from(std::size_t k, std::uint64_t prev_end) {
  const auto& els = rule_->rule.elements;
  if (k == els.size()) return true;
  const RuleElement& e = els[k];
  const CompiledElement& ce = rule_->elements[k];
  const std::uint64_t win_end = w_.base + w_.size;

  if (e.kind == RuleElement::Kind::kContent) {
    std::uint64_t lo = 0;
    std::uint64_t end_limit = 0;
    content_range(e, prev_end, lo, end_limit);
    const std::size_t n = e.bytes.size();
    if (e.negated) {
      // Absence is only provable over bytes we have: a range that starts before the window or
      // ends after what has arrived (mid-stream) is undecided, and undecided never alerts.
      if (lo < w_.base) return false;
      if (end_limit != kUnbounded && end_limit > win_end && !w_.end_of_stream) return false;
    }
    const std::uint64_t from = std::max(lo, w_.base);
    const std::uint64_t limit = std::min(end_limit, win_end);
    bool found_any = false;
    if (limit >= from + n) {
      std::size_t i = static_cast<std::size_t>(from - w_.base);
      const std::size_t last = static_cast<std::size_t>(limit - n - w_.base);
      while (i <= last) {
        if (left_ == 0) return false;
        --left_;
        const std::size_t at = e.nocase ? find_folded(w_.data, i, last, ce.folded)
                                        : find_bytes(w_.data, i, last, e.bytes);
        if (at == SIZE_MAX) break;
        found_any = true;
        if (e.negated) break;
        if (match_from(k + 1, w_.base + at + n)) return true;
        if (!ce.later_depends) return false;
        i = at + 1;
      }
    }
    if (e.negated) return !found_any && match_from(k + 1, prev_end);
    return false;
  }

  // pcre: relative (R) runs on the bytes after the previous match, so ^ anchors there (as in
  // Suricata); otherwise on the whole window, where ^ means the start of the stream.
  std::size_t sub = 0;
  if (e.relative) {
    if (prev_end < w_.base || prev_end > win_end) return false;
    sub = static_cast<std::size_t>(prev_end - w_.base);
  }
  const std::uint8_t* subject = w_.data + sub;
  const std::size_t subject_size = w_.size - sub;
  const bool not_bol = !e.relative && w_.base > 0;
  const bool not_eol = !w_.end_of_stream;
  if (e.negated) {
    if (left_ == 0) return false;
    --left_;
    const auto m = pcre_.find(*ce.pcre, subject, subject_size, 0, not_bol, not_eol);
    return !m.found && match_from(k + 1, prev_end);
  }
  std::size_t from = 0;
  while (from <= subject_size) {
    if (left_ == 0) return false;
    --left_;
    const auto m = pcre_.find(*ce.pcre, subject, subject_size, from, not_bol, not_eol);
    if (!m.found) return false;
    if (match_from(k + 1, w_.base + sub + m.end)) return true;
    if (!ce.later_depends) return false;
    from = m.start + 1;
  }
  return false;
}

}  // namespace tosec::svm::ids
