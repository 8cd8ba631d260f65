#include "tosec/rpc/notifier.h"

#include <gtest/gtest.h>

#include <thread>

#include "test_region.h"
#include "tosec/rpc/spsc_ring.h"

namespace tosec::rpc {
namespace {

// Two rings (ping, pong) and two doorbell vectors of one "peer", shared by two threads.
class PingPong {
 public:
  PingPong() {
    RegionLayout l;
    l.add_ring("ping", 64, 8).add_ring("pong", 64, 8);
    EXPECT_TRUE(l.format(buf.bytes()).ok());
    view = std::move(RegionView::attach(buf.bytes()).value());
    EXPECT_TRUE(doorbells.create_own(1, 2).ok());
  }
  SpscRing end(const char* name, RingEnd e) {
    return std::move(SpscRing::attach(view, name, e).value());
  }
  test::SharedBuffer buf{1 << 16};
  RegionView view;
  EventfdDoorbells doorbells;
};

class CountingRinger : public DoorbellRinger {
 public:
  explicit CountingRinger(DoorbellRinger& inner) : inner_(inner) {}
  Status ring(PeerId p, Vector v) override {
    rings.fetch_add(1);
    return inner_.ring(p, v);
  }
  std::atomic<std::uint64_t> rings{0};

 private:
  DoorbellRinger& inner_;
};

// Would hang without the sleeping-flag handshake; a lost wake-up turns into a timeout failure.
void run_ping_pong(SpinPolicy policy, std::uint64_t rounds) {
  PingPong pp;
  constexpr std::int64_t kTimeout = 5'000'000'000;  // a lost wake-up, not slowness, trips this
  std::atomic<bool> failed{false};
  std::thread echo([&] {
    auto in = pp.end("ping", RingEnd::kConsumer);
    auto out = pp.end("pong", RingEnd::kProducer);
    Waiter w(pp.doorbells, 1, policy);
    for (std::uint64_t i = 0; i < rounds; ++i) {
      auto r = w.wait(
          in.consumer_sleeping(), [&] { return in.available() > 0; }, kTimeout);
      if (!r.ok() || !*r) {
        failed = true;
        return;
      }
      std::uint64_t v = 0;
      in.dequeue_burst(&v, 1);
      ++v;
      out.enqueue_burst(&v, 1);
      if (!notify(out.consumer_sleeping(), pp.doorbells, 1, 0).ok()) failed = true;
    }
  });
  auto out = pp.end("ping", RingEnd::kProducer);
  auto in = pp.end("pong", RingEnd::kConsumer);
  Waiter w(pp.doorbells, 0, policy);
  for (std::uint64_t i = 0; i < rounds && !failed; ++i) {
    std::uint64_t v = i * 2;
    ASSERT_EQ(out.enqueue_burst(&v, 1), 1U);
    ASSERT_TRUE(notify(out.consumer_sleeping(), pp.doorbells, 1, 1).ok());
    auto r = w.wait(
        in.consumer_sleeping(), [&] { return in.available() > 0; }, kTimeout);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(*r) << "lost wake-up at round " << i;
    ASSERT_EQ(in.dequeue_burst(&v, 1), 1U);
    ASSERT_EQ(v, i * 2 + 1);
  }
  echo.join();
  EXPECT_FALSE(failed);
}

TEST(Notifier, NoLostWakeupsSleepOnly) { run_ping_pong(SpinPolicy::sleep_only(), 50'000); }
TEST(Notifier, NoLostWakeupsAdaptive) { run_ping_pong(SpinPolicy{}, 50'000); }
TEST(Notifier, NoLostWakeupsTinySpin) { run_ping_pong(SpinPolicy{200, 0, 400, false}, 50'000); }

TEST(Notifier, TimesOutWhenNothingArrives) {
  PingPong pp;
  auto in = pp.end("ping", RingEnd::kConsumer);
  Waiter w(pp.doorbells, 0, SpinPolicy{1000, 0, 1000, false});
  auto r = w.wait(
      in.consumer_sleeping(), [&] { return in.available() > 0; }, 20'000'000);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_EQ(w.stats().timeouts, 1U);
  EXPECT_EQ(in.consumer_sleeping().load(), 0U) << "flag must be cleared after the wait";
}

TEST(Notifier, ProducerRingsOnlyWhenConsumerSleeps) {
  PingPong pp;
  CountingRinger ringer(pp.doorbells);
  auto out = pp.end("ping", RingEnd::kProducer);
  auto in = pp.end("ping", RingEnd::kConsumer);
  std::uint64_t v = 1;
  // Consumer awake: publishing does not ring.
  out.enqueue_burst(&v, 1);
  ASSERT_TRUE(notify(out.consumer_sleeping(), ringer, 1, 0).ok());
  EXPECT_EQ(ringer.rings.load(), 0U);
  in.dequeue_burst(&v, 1);
  // Consumer asleep: publishing rings exactly once and wakes it.
  std::thread t([&] {
    Waiter w(pp.doorbells, 0, SpinPolicy::sleep_only());
    auto r = w.wait(
        in.consumer_sleeping(), [&] { return in.available() > 0; }, 5'000'000'000);
    EXPECT_TRUE(r.ok() && *r);
  });
  while (in.consumer_sleeping().load() == 0) std::this_thread::yield();
  out.enqueue_burst(&v, 1);
  ASSERT_TRUE(notify(out.consumer_sleeping(), ringer, 1, 0).ok());
  t.join();
  EXPECT_EQ(ringer.rings.load(), 1U);
}

TEST(Notifier, AdaptiveBudgetShrinksWhenSpinsMiss) {
  PingPong pp;
  auto in = pp.end("ping", RingEnd::kConsumer);
  Waiter w(pp.doorbells, 0, SpinPolicy{16'000, 500, 20'000, true});
  for (int i = 0; i < 8; ++i) {
    (void)w.wait(
        in.consumer_sleeping(), [&] { return in.available() > 0; }, 1'000'000);
  }
  EXPECT_EQ(w.spin_budget_ns(), 500);
}

// The adaptive rule on its own (AdaptiveSpin), fed hits and misses: no clock involved.
TEST(AdaptiveSpin, ProbesAtZeroHitsArmAndMissesHalveToZero) {
  SpinPolicy p;
  p.spin_ns = 0;
  p.max_spin_ns = 20'000;
  p.probe_ns = 20'000;
  p.probe_every = 4;
  AdaptiveSpin a(p);
  EXPECT_EQ(a.next_budget(), 0);
  EXPECT_EQ(a.next_budget(), 0);
  EXPECT_EQ(a.next_budget(), 0);
  EXPECT_EQ(a.next_budget(), 20'000);  // every 4th wait at zero probes
  a.on_hit(15'000, 20'000);            // the probe caught it: spin from now on
  EXPECT_EQ(a.next_budget(), 20'000);
  a.on_miss();
  EXPECT_EQ(a.next_budget(), 10'000);
  a.on_hit(2'000, 10'000);  // early hit: no change
  EXPECT_EQ(a.next_budget(), 10'000);
  a.on_hit(9'000, 10'000);  // late hit: a longer spin would catch more
  EXPECT_EQ(a.next_budget(), 20'000);
  for (int i = 0; i < 10; ++i) a.on_miss();
  EXPECT_EQ(a.budget_ns(), 0);  // below 250 ns a spin cannot beat a wake-up
  EXPECT_EQ(a.next_budget(), 0);
}

// Zero-budget waits until the next probe (the probe itself counted).
int waits_to_next_probe(AdaptiveSpin& a) {
  for (int n = 1; n <= 1000; ++n) {
    if (a.next_budget() > 0) return n;
  }
  return -1;
}

TEST(AdaptiveSpin, ProbeIntervalBacksOffWhileProbesMissAndResetsOnAHit) {
  SpinPolicy p{.spin_ns = 0,
               .max_spin_ns = 200'000,
               .probe_ns = 200'000,
               .probe_every = 8,
               .probe_every_max = 64,
               .hit_rate = true};
  AdaptiveSpin a(p);
  // Every probe misses (a waiter whose spin holds the core its producer needs): 8, 16, 32,
  // then every 64 waits, never more often.
  for (int expect : {8, 16, 32, 64, 64, 64}) {
    EXPECT_EQ(waits_to_next_probe(a), expect);
    a.on_miss();
  }
  // A probe that hits re-arms spinning and the short interval for the next time it stops.
  EXPECT_EQ(waits_to_next_probe(a), 64);
  a.on_hit(30'000, 200'000);
  EXPECT_EQ(a.next_budget(), 200'000);
  while (a.budget_ns() > 0) {
    (void)a.next_budget();
    a.on_miss();
  }
  EXPECT_EQ(waits_to_next_probe(a), 8);

  // Without probe_every_max the interval is fixed.
  p.probe_every_max = 0;
  AdaptiveSpin fixed(p);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(waits_to_next_probe(fixed), 8);
    fixed.on_miss();
  }
}

TEST(AdaptiveSpin, HitRateRuleKeepsSpinningThroughTheOddMiss) {
  SpinPolicy p;
  p.spin_ns = 50'000;
  p.max_spin_ns = 50'000;
  p.probe_ns = 50'000;
  p.probe_every = 16;
  p.hit_rate = true;
  AdaptiveSpin a(p);
  // Mostly hits with one miss in four (socket calls, then a network round trip): the budget
  // stays at the maximum, where the halving rule would have decayed it to zero.
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(a.next_budget(), 50'000) << i;
    if (i % 4 == 3) {
      a.on_miss();
    } else {
      a.on_hit(1'000, 50'000);
    }
  }
  // Misses only: spinning stops after a few, then a probe every 16 idle periods.
  int spins = 0;
  for (int i = 0; i < 20; ++i) {
    if (a.next_budget() > 0) {
      ++spins;
      a.on_miss();
    }
  }
  EXPECT_EQ(a.budget_ns(), 0);
  EXPECT_LE(spins, 8);
  int probes = 0;
  for (int i = 0; i < 32; ++i) probes += a.next_budget() > 0 ? 1 : 0;
  EXPECT_EQ(probes, 2);
  // A probe that catches something brings the whole budget back.
  a.on_hit(10'000, 50'000);
  EXPECT_EQ(a.next_budget(), 50'000);
}

TEST(AdaptiveSpin, SpinReportsHitsAndMisses) {
  SpinPolicy p;
  p.spin_ns = 1'000'000;  // 1 ms: a poll that turns true after 5 calls is caught
  p.max_spin_ns = 1'000'000;
  AdaptiveSpin a(p);
  int calls = 0;
  EXPECT_TRUE(a.spin([&] { return ++calls == 5; }));
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(a.budget_ns(), 1'000'000);
  // Never true: the budget (capped by limit_ns) runs out, the miss halves the budget.
  EXPECT_FALSE(a.spin([] { return false; }, 10'000));
  EXPECT_EQ(a.budget_ns(), 500'000);
  // A zero budget does not poll at all.
  AdaptiveSpin off(SpinPolicy::sleep_only());
  calls = 0;
  EXPECT_FALSE(off.spin([&] { return ++calls > 0; }));
  EXPECT_EQ(calls, 0);
}

TEST(Notifier, UnknownDoorbellIsAClearError) {
  EventfdDoorbells d;
  auto s = d.ring(42, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no peer 42"), std::string::npos);
}

}  // namespace
}  // namespace tosec::rpc
