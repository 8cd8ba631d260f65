// Notification: spin briefly, then sleep on a doorbell, without lost wake-ups.
//
// Consumer (Waiter::wait):                    Producer (after publishing):
//   spin up to the budget checking ready()      publish (store head, release)
//   store sleeping = 1                          fence(seq_cst)
//   fence(seq_cst)                              if sleeping: ring the consumer's doorbell
//   if ready(): sleeping = 0, done
//   block on our doorbell vector
//   sleeping = 0, re-check ready()
//
// The two seq_cst fences make this a Dekker handshake: either the producer sees sleeping == 1
// and rings, or the consumer's re-check sees the new head. So the producer rings only while the
// consumer may be asleep (an eventfd write costs ~1 us here), and no wake-up is ever lost.
//
// Spin budget: spinning only pays when the producer runs on another core at the same moment.
// On hosts with 2 shared cores a spinning consumer can steal the very core its producer needs
// (measured here: unpinned spinning round trips 6-17 us vs 4.5 us through eventfds), so the
// default budget is small and adaptive: a spin that ran out halves it (down to zero), a spin
// that caught the data late in its budget doubles it (up to max_spin_ns), and at zero the
// waiter probes a short spin every 256 waits (SpinPolicy::probe_every) to find out whether
// spinning pays again. AdaptiveSpin is that rule on its own, for other wait loops.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/status.h"

namespace tosec::rpc {

struct SpinPolicy {
  std::int64_t spin_ns = 0;           // initial budget: start asleep, probing finds spin wins
  std::int64_t min_spin_ns = 0;       // adaptive floor
  std::int64_t max_spin_ns = 20'000;  // adaptive ceiling
  bool adaptive = true;
  std::int64_t probe_ns = 1'000;    // spin tried every probe_every waits at a zero budget
  std::uint32_t probe_every = 256;  // how often a zero budget probes
  // Above probe_every: each probe that misses doubles the interval up to this, a probe that
  // hits resets it. A waiter whose spins never pay (its producer needs the very core it spins
  // on) then wastes a probe only every probe_every_max waits, while one that is stuck after a
  // bad stretch still tries again soon. 0: the interval stays probe_every.
  std::uint32_t probe_every_max = 0;
  // Alternative rule: spin the whole max_spin_ns while at least half of the recent spins
  // caught something (a decaying hit score), else not at all (probing as above). For waiters
  // whose idle gaps are mostly short with the odd long one (a TOE worker serving socket calls
  // and one network round trip per connection), where halving on every miss would stop the
  // spinning that pays.
  bool hit_rate = false;

  static SpinPolicy sleep_only() { return {0, 0, 0, false, 0}; }
  static SpinPolicy spin_only() { return {INT64_MAX, 0, INT64_MAX, false, 0}; }
};

// The adaptive budget of one waiter (the rule above), for any wait loop that spins before it
// blocks: the Waiter's, a TOE worker's busy-poll (tovm/worker.h), the shim's blocking calls.
// Single-threaded: one per waiting thread.
class AdaptiveSpin {
 public:
  explicit AdaptiveSpin(SpinPolicy policy = {}) : policy_(policy), budget_ns_(policy.spin_ns) {}
  // The budget for this wait (0: do not spin).
  std::int64_t next_budget();
  // The wait ended while spinning after `spun_ns` of `budget_ns` / the budget ran out.
  void on_hit(std::int64_t spun_ns, std::int64_t budget_ns);
  void on_miss();
  std::int64_t budget_ns() const { return budget_ns_; }

  // Spins up to next_budget() (and at most limit_ns, if >= 0) until poll() is true, reading
  // the clock every 32 polls; records the hit or miss. False: not ready, go to sleep.
  template <class Poll>
  bool spin(Poll&& poll, std::int64_t limit_ns = -1);

 private:
  SpinPolicy policy_;
  std::int64_t budget_ns_;
  std::uint32_t waits_at_zero_ = 0;
  std::uint32_t probe_interval_ = 0;  // current interval (probe_every .. probe_every_max)
  bool probing_ = false;              // the spin under way is a probe
  std::uint32_t score_ = kScoreMax;   // hit_rate rule: decaying share of hits, kScoreMax = all
  static constexpr std::uint32_t kScoreMax = 1024;
};

// Producer side: call after publishing. True if the consumer may be asleep and must be rung.
inline bool must_notify(const std::atomic<std::uint32_t>& sleeping) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return sleeping.load(std::memory_order_relaxed) != 0;
}

// Publishes-then-notifies in one call: rings (peer, vector) only if the consumer sleeps.
inline Status notify(const std::atomic<std::uint32_t>& sleeping, DoorbellRinger& ringer,
                     PeerId peer, Vector vector) {
  if (!must_notify(sleeping)) return {};
  return ringer.ring(peer, vector);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class Waiter {
 public:
  struct Stats {
    std::uint64_t ready_at_once = 0;  // data was there on entry
    std::uint64_t spin_hits = 0;      // data arrived while spinning
    std::uint64_t sleeps = 0;         // blocked on the doorbell
    std::uint64_t spurious = 0;       // woken with nothing ready
    std::uint64_t timeouts = 0;
  };

  Waiter(DoorbellWaiter& doorbell, Vector vector, SpinPolicy policy = {})
      : doorbell_(&doorbell), vector_(vector), spin_(policy) {}

  // Waits until ready() is true. `sleeping` are the flags producers check (one per ring this
  // consumer serves: a TOE worker waits on many guests' rings with one doorbell vector).
  // Returns true when ready, false on timeout (timeout_ns < 0: wait forever).
  template <class Ready>
  Result<bool> wait(std::span<std::atomic<std::uint32_t>* const> sleeping, Ready&& ready,
                    std::int64_t timeout_ns = -1);
  template <class Ready>
  Result<bool> wait(std::atomic<std::uint32_t>& sleeping, Ready&& ready,
                    std::int64_t timeout_ns = -1) {
    std::atomic<std::uint32_t>* one[] = {&sleeping};
    return wait(std::span<std::atomic<std::uint32_t>* const>(one), ready, timeout_ns);
  }

  std::int64_t spin_budget_ns() const { return spin_.budget_ns(); }
  const Stats& stats() const { return stats_; }

 private:
  using Clock = std::chrono::steady_clock;
  static std::int64_t since_ns(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
  }

  DoorbellWaiter* doorbell_;
  Vector vector_;
  AdaptiveSpin spin_;
  Stats stats_;
};

template <class Poll>
bool AdaptiveSpin::spin(Poll&& poll, std::int64_t limit_ns) {
  const std::int64_t budget = next_budget();
  if (budget <= 0) return false;
  const std::int64_t limit = limit_ns >= 0 ? std::min(budget, limit_ns) : budget;
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto spun = [&] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
  };
  for (std::uint32_t i = 1;; ++i) {
    cpu_relax();
    if (poll()) {
      on_hit(spun(), budget);
      return true;
    }
    if ((i & 31) == 0 && spun() >= limit) break;
  }
  on_miss();
  return false;
}

template <class Ready>
Result<bool> Waiter::wait(std::span<std::atomic<std::uint32_t>* const> sleeping, Ready&& ready,
                          std::int64_t timeout_ns) {
  if (ready()) {
    ++stats_.ready_at_once;
    return true;
  }
  const auto t0 = Clock::now();
  if (spin_.spin(ready, timeout_ns)) {
    ++stats_.spin_hits;
    return true;
  }
  for (;;) {
    for (auto* f : sleeping) f->store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
      for (auto* f : sleeping) f->store(0, std::memory_order_relaxed);
      return true;
    }
    std::int64_t left = -1;
    if (timeout_ns >= 0) {
      left = timeout_ns - since_ns(t0);
      if (left <= 0) {
        for (auto* f : sleeping) f->store(0, std::memory_order_relaxed);
        ++stats_.timeouts;
        return false;
      }
    }
    ++stats_.sleeps;
    auto rung = doorbell_->wait(vector_, left);
    for (auto* f : sleeping) f->store(0, std::memory_order_relaxed);
    if (!rung) return rung.error();
    if (ready()) return true;
    if (*rung) ++stats_.spurious;  // stale ring from an earlier round: go back to sleep
  }
}

}  // namespace tosec::rpc
