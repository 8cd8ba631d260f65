#include "tosec/rpc/notifier.h"

#include <algorithm>

namespace tosec::rpc {

namespace {
constexpr std::int64_t kNegligibleSpinNs = 250;  // below this a spin cannot beat a wake-up
}  // namespace

std::int64_t AdaptiveSpin::next_budget() {
  probing_ = false;
  if (budget_ns_ > 0 || !policy_.adaptive || policy_.probe_ns <= 0) return budget_ns_;
  // At zero we never learn whether spinning would pay again: try a short spin now and then.
  if (probe_interval_ < policy_.probe_every) probe_interval_ = policy_.probe_every;
  if (++waits_at_zero_ < probe_interval_) return 0;
  waits_at_zero_ = 0;
  probing_ = true;
  return policy_.probe_ns;
}

void AdaptiveSpin::on_hit(std::int64_t spun_ns, std::int64_t budget_ns) {
  if (!policy_.adaptive) return;
  if (probing_) probe_interval_ = policy_.probe_every;
  if (policy_.hit_rate) {
    // A probe that caught something re-arms spinning, with a score two misses from stopping.
    if (budget_ns_ == 0) score_ = std::max(score_, kScoreMax * 5 / 8);
    score_ += (kScoreMax - score_) / 8;
    if (score_ >= kScoreMax / 2) budget_ns_ = policy_.max_spin_ns;
    return;
  }
  // A probe that hit re-arms spinning; a hit late in the budget says a longer one would catch
  // more. An early hit needs no change.
  if (budget_ns_ == 0) {
    budget_ns_ = std::max(budget_ns, policy_.min_spin_ns);
  } else if (spun_ns * 2 > budget_ns_) {
    budget_ns_ = std::min(policy_.max_spin_ns, budget_ns_ * 2);
  }
}

void AdaptiveSpin::on_miss() {
  if (!policy_.adaptive) return;
  if (probing_ && policy_.probe_every_max > policy_.probe_every) {
    probe_interval_ = std::min(policy_.probe_every_max, probe_interval_ * 2);
  }
  if (policy_.hit_rate) {
    score_ -= score_ / 8;
    if (score_ < kScoreMax / 2) budget_ns_ = 0;
    return;
  }
  budget_ns_ = std::max(policy_.min_spin_ns, budget_ns_ / 2);
  if (budget_ns_ < kNegligibleSpinNs) budget_ns_ = std::max<std::int64_t>(policy_.min_spin_ns, 0);
}

}  // namespace tosec::rpc
