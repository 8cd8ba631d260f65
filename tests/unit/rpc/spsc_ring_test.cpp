#include "tosec/rpc/spsc_ring.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <thread>
#include <vector>

#include "test_region.h"

namespace tosec::rpc {
namespace {

struct Slot {
  std::uint64_t seq;
  std::uint64_t check;
};

class RingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegionLayout l;
    l.add_ring("r", 8, sizeof(Slot));
    ASSERT_TRUE(l.format(buf.bytes()).ok());
    auto v = RegionView::attach(buf.bytes());
    ASSERT_TRUE(v.ok());
    view = std::move(v.value());
    prod = std::move(SpscRing::attach(view, "r", RingEnd::kProducer).value());
    cons = std::move(SpscRing::attach(view, "r", RingEnd::kConsumer).value());
  }
  RingShared& shared() {
    return *reinterpret_cast<RingShared*>(view.area_bytes(*view.find("r", AreaKind::kRing)).data());
  }
  test::SharedBuffer buf{1 << 16};
  RegionView view;
  SpscRing prod, cons;
};

TEST_F(RingTest, BurstRoundTripWithWrapAround) {
  std::uint64_t next_in = 0, next_out = 0;
  for (int round = 0; round < 100; ++round) {
    std::array<Slot, 5> in{};
    for (auto& s : in) s = {next_in, ~next_in}, ++next_in;
    ASSERT_EQ(prod.enqueue_burst(in.data(), 5), 5U);
    std::array<Slot, 8> out{};
    ASSERT_EQ(cons.dequeue_burst(out.data(), 8), 5U);
    for (std::uint32_t i = 0; i < 5; ++i) {
      EXPECT_EQ(out[i].seq, next_out);
      EXPECT_EQ(out[i].check, ~next_out);
      ++next_out;
    }
  }
}

TEST_F(RingTest, FullRingAcceptsPartialBurst) {
  std::array<Slot, 12> in{};
  EXPECT_EQ(prod.enqueue_burst(in.data(), 12), 8U);
  EXPECT_EQ(prod.free_slots(), 0U);
  EXPECT_EQ(prod.enqueue_burst(in.data(), 1), 0U);
  std::array<Slot, 3> out{};
  EXPECT_EQ(cons.dequeue_burst(out.data(), 3), 3U);
  EXPECT_EQ(prod.free_slots(), 3U);
  EXPECT_EQ(cons.available(), 5U);
}

TEST_F(RingTest, ZeroCopyReserveAndPeek) {
  ASSERT_EQ(prod.free_slots(), 8U);
  for (std::uint32_t i = 0; i < 3; ++i) {
    Slot s{i + 10, 0};
    std::memcpy(prod.producer_slot(i), &s, sizeof s);
  }
  EXPECT_EQ(cons.available(), 0U);  // nothing published yet
  prod.publish(3);
  ASSERT_EQ(cons.available(), 3U);
  Slot s{};
  std::memcpy(&s, cons.consumer_slot(2), sizeof s);
  EXPECT_EQ(s.seq, 12U);
  cons.release(3);
  EXPECT_EQ(cons.available(), 0U);
}

TEST_F(RingTest, ProducerIndexBeyondCapacityBreaksTheRing) {
  shared().head.store(1000);  // a malicious producer
  EXPECT_EQ(cons.available(), 0U);
  EXPECT_TRUE(cons.broken());
  EXPECT_NE(cons.error().find("capacity 8"), std::string::npos) << cons.error();
  Slot s{};
  EXPECT_EQ(cons.dequeue_burst(&s, 1), 0U);  // sticky
}

TEST_F(RingTest, ProducerIndexGoingBackwardsBreaksTheRing) {
  std::array<Slot, 4> in{};
  ASSERT_EQ(prod.enqueue_burst(in.data(), 4), 4U);
  ASSERT_EQ(cons.available(), 4U);
  shared().head.store(2);
  EXPECT_EQ(cons.available(), 0U);
  EXPECT_TRUE(cons.broken());
}

TEST_F(RingTest, ConsumerIndexAheadOfProducerBreaksTheRing) {
  std::array<Slot, 8> in{};
  ASSERT_EQ(prod.enqueue_burst(in.data(), 8), 8U);
  shared().tail.store(50);  // a malicious consumer claims it read more than was written
  EXPECT_EQ(prod.enqueue_burst(in.data(), 1), 0U);
  EXPECT_TRUE(prod.broken());
  EXPECT_NE(prod.error().find("consumer index 50"), std::string::npos) << prod.error();
}

TEST_F(RingTest, AttachRejectsGeometryMismatch) {
  auto area = view.area_bytes(*view.find("r", AreaKind::kRing));
  auto r = SpscRing::attach(area, 16, sizeof(Slot), RingEnd::kConsumer, "r");
  ASSERT_FALSE(r.ok());
  shared().capacity = 1 << 20;  // header disagrees with the area table
  auto r2 = SpscRing::attach(area, 8, sizeof(Slot), RingEnd::kConsumer, "r");
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.error().message.find("does not match"), std::string::npos);
}

TEST_F(RingTest, TypedRingChecksSlotSize) {
  struct Big {
    std::uint64_t x[4];
  };
  auto bad = TypedRing<Big>::attach(view, "r", RingEnd::kConsumer);
  ASSERT_FALSE(bad.ok());
  auto good = TypedRing<Slot>::attach(view, "r", RingEnd::kProducer);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(good->enqueue(Slot{7, 7}));
  Slot s{};
  EXPECT_TRUE(cons.dequeue_burst(&s, 1) == 1 && s.seq == 7);
}

TEST(RingThreads, TwoThreadsMillionItemsInOrder) {
  test::SharedBuffer buf(1 << 20);
  RegionLayout l;
  l.add_ring("r", 1024, 16);
  ASSERT_TRUE(l.format(buf.bytes()).ok());
  auto v = RegionView::attach(buf.bytes());
  auto p = SpscRing::attach(*v, "r", RingEnd::kProducer);
  auto c = SpscRing::attach(*v, "r", RingEnd::kConsumer);
  constexpr std::uint64_t kN = 1'000'000;
  std::thread producer([&] {
    std::array<Slot, 32> batch{};
    std::uint64_t next = 0;
    while (next < kN) {
      const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(32, kN - next));
      for (std::uint32_t i = 0; i < n; ++i) batch[i] = {next + i, (next + i) * 31};
      const auto done = p->enqueue_burst(batch.data(), n);
      next += done;
      if (done == 0) std::this_thread::yield();
    }
  });
  std::uint64_t expect = 0;
  std::array<Slot, 64> out{};
  while (expect < kN) {
    const auto n = c->dequeue_burst(out.data(), 64);
    for (std::uint32_t i = 0; i < n; ++i) {
      ASSERT_EQ(out[i].seq, expect);
      ASSERT_EQ(out[i].check, expect * 31);
      ++expect;
    }
    if (n == 0) std::this_thread::yield();
  }
  producer.join();
  EXPECT_FALSE(c->broken());
}

}  // namespace
}  // namespace tosec::rpc
