// ControlRing: framing, wrap-around, flow control, and robustness against a peer that writes
// garbage into the ring or corrupts its indices.
#include "tosec/rpc/control_ring.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "control_test_util.h"

namespace tosec::rpc {
namespace {

using test::TestArea;

std::vector<std::byte> pattern(std::uint64_t seed, std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::byte>((seed * 131 + i * 7 + 3) & 0xFF);
  return v;
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

std::vector<std::byte> vec_of(const std::string& s) {
  auto b = bytes_of(s);
  return {b.begin(), b.end()};
}

ControlRing attach_ok(TestArea& area) {
  auto r = ControlRing::attach(area.span(), "test");
  EXPECT_TRUE(r.ok()) << r.error().message;
  return std::move(r).value();
}

struct Ring {
  explicit Ring(std::uint32_t capacity) : area(capacity) {
    EXPECT_TRUE(ControlRing::format(area.span(), capacity).ok());
  }
  TestArea area;
};

TEST(ControlRing, Crc32cKnownVector) {
  EXPECT_EQ(ControlRing::checksum(bytes_of("123456789")), 0xE306'9283U);
  EXPECT_EQ(ControlRing::checksum({}), 0U);
}

TEST(ControlRing, FormatRejectsBadGeometry) {
  TestArea area(1024);
  EXPECT_EQ(ControlRing::format(area.span(), 100).code(), EINVAL);             // not a power of two
  EXPECT_EQ(ControlRing::format(area.span(), 32).code(), EINVAL);              // below the minimum
  EXPECT_EQ(ControlRing::format(area.span(), 2048).code(), EINVAL);            // area too small
  EXPECT_EQ(ControlRing::format(area.span().subspan(8), 512).code(), EINVAL);  // misaligned
  EXPECT_TRUE(ControlRing::format(area.span(), 1024).ok());
}

TEST(ControlRing, AttachValidatesHeader) {
  TestArea area(1024);
  auto blank = ControlRing::attach(area.span(), "blank");
  ASSERT_FALSE(blank.ok());
  EXPECT_EQ(blank.error().code, EPROTO);
  EXPECT_NE(blank.error().message.find("'blank'"), std::string::npos) << blank.error().message;

  ASSERT_TRUE(ControlRing::format(area.span(), 1024).ok());
  EXPECT_EQ(ControlRing::attach(area.span().first(1000)).error().code, EINVAL);  // truncated area
  area.header().version = 99;
  EXPECT_EQ(ControlRing::attach(area.span()).error().code, EPROTO);
  area.header().version = kControlRingVersion;
  area.header().capacity = 4096;  // claims more data than the area has
  EXPECT_EQ(ControlRing::attach(area.span()).error().code, EINVAL);
  area.header().capacity = 1024;
  area.header().consumer.store(64);  // consumer ahead of producer
  EXPECT_EQ(ControlRing::attach(area.span()).error().code, EPROTO);
  area.header().consumer.store(0);
  EXPECT_TRUE(ControlRing::attach(area.span()).ok());
}

TEST(ControlRing, GeometryIsNotReReadAfterAttach) {
  Ring ring(256);
  ControlRing r = attach_ok(ring.area);
  ring.area.header().capacity = 1U << 20;  // a hostile peer grows the ring after attach
  for (int i = 0; i < 50; ++i) {
    auto p = pattern(static_cast<std::uint64_t>(i), 100);
    ASSERT_TRUE(r.write(7, p).ok());
    auto f = r.read();
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(f->payload, p);
  }
  EXPECT_EQ(r.capacity(), 256U);
}

TEST(ControlRing, RoundTripSmallSizesAndTypes) {
  Ring ring(1024);
  ControlRing r = attach_ok(ring.area);
  EXPECT_EQ(r.read().error().code, EAGAIN);
  for (std::size_t n : std::vector<std::size_t>{0, 1, 7, 8, 9, 15, 16, 17, 100}) {
    const auto type = static_cast<std::uint32_t>(n * 1000 + 1);
    auto p = pattern(n, n);
    ASSERT_TRUE(r.write(type, p).ok()) << n;
    auto f = r.read();
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(f->type, type);
    EXPECT_EQ(f->payload, p);
  }
  EXPECT_EQ(r.read().error().code, EAGAIN);
  EXPECT_EQ(r.backlog_bytes(), 0U);
}

TEST(ControlRing, WrapAroundWithRandomSizes) {
  Ring ring(1024);
  ControlRing producer = attach_ok(ring.area);
  ControlRing consumer = attach_ok(ring.area);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::size_t> size(0, 300);
  std::uniform_int_distribution<int> burst(1, 8);
  std::deque<std::pair<std::uint64_t, std::size_t>> in_flight;
  std::uint64_t next_write = 0;
  std::uint64_t next_read = 0;
  constexpr std::uint64_t kMessages = 20000;
  while (next_read < kMessages) {
    for (int i = burst(rng); i > 0 && next_write < kMessages; --i) {
      const std::size_t n = size(rng);
      Status s = producer.write(static_cast<std::uint32_t>(next_write), pattern(next_write, n));
      if (s.code() == EAGAIN) break;
      ASSERT_TRUE(s.ok()) << s.message();
      in_flight.emplace_back(next_write++, n);
    }
    for (int i = burst(rng); i > 0; --i) {
      auto f = consumer.read();
      if (!f.ok()) {
        ASSERT_EQ(f.error().code, EAGAIN) << f.error().message;
        ASSERT_TRUE(in_flight.empty());
        break;
      }
      ASSERT_FALSE(in_flight.empty());
      auto [seq, n] = in_flight.front();
      in_flight.pop_front();
      ASSERT_EQ(f->type, static_cast<std::uint32_t>(seq));
      ASSERT_EQ(f->payload, pattern(seq, n)) << "message " << seq;
      ++next_read;
    }
  }
  EXPECT_EQ(consumer.bad_frames(), 0U);
}

TEST(ControlRing, FullRingReturnsEagainThenDrains) {
  Ring ring(256);
  ControlRing r = attach_ok(ring.area);
  // 24-byte payloads take 40 bytes each: six fit in 256, a seventh does not.
  int written = 0;
  Status s;
  while ((s = r.write(1, pattern(static_cast<std::uint64_t>(written), 24))).ok()) ++written;
  EXPECT_EQ(s.code(), EAGAIN);
  EXPECT_EQ(written, 6);
  EXPECT_EQ(r.backlog_bytes(), 240U);

  auto first = r.read();
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->payload, pattern(0, 24));
  ASSERT_TRUE(r.write(1, pattern(6, 24)).ok()) << "room after one read";
  EXPECT_EQ(r.write(1, pattern(7, 24)).code(), EAGAIN);
  for (std::uint64_t i = 1; i <= 6; ++i) {
    auto f = r.read();
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(f->payload, pattern(i, 24));
  }
  EXPECT_EQ(r.read().error().code, EAGAIN);
}

TEST(ControlRing, OversizeIsEmsgsizeAndExactFitWorks) {
  Ring ring(256);
  ControlRing r = attach_ok(ring.area);
  EXPECT_EQ(r.max_payload(), 240U);
  std::vector<std::byte> too_big(241);
  Status s = r.write(1, too_big);
  EXPECT_EQ(s.code(), EMSGSIZE);
  EXPECT_NE(s.message().find("241"), std::string::npos) << s.message();

  ASSERT_TRUE(r.write(2, pattern(1, 8)).ok());
  EXPECT_EQ(r.write(3, pattern(2, 240)).code(), EAGAIN) << "fits an empty ring, not this one";
  ASSERT_TRUE(r.read().ok());
  ASSERT_TRUE(r.write(3, pattern(2, 240)).ok()) << "a frame may fill the whole ring";
  auto f = r.read();
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->payload, pattern(2, 240));
}

TEST(ControlRing, GarbageThenValidFrame) {
  Ring ring(1024);
  ControlRing consumer = attach_ok(ring.area);
  {
    ControlRing producer = attach_ok(ring.area);
    ASSERT_TRUE(producer.write(1, bytes_of("before")).ok());
  }
  // A peer publishes 40 bytes of garbage, then (re-attached, as a restarted peer would) a frame.
  const std::uint64_t at = ring.area.header().producer.load();
  std::vector<std::byte> junk(40, std::byte{0x5A});
  ring.area.poke(at, junk.data(), junk.size());
  ring.area.header().producer.store(at + junk.size());
  ControlRing producer = attach_ok(ring.area);
  ASSERT_TRUE(producer.write(2, bytes_of("after")).ok());

  auto f1 = consumer.read();
  ASSERT_TRUE(f1.ok());
  EXPECT_EQ(f1->type, 1U);
  auto bad = consumer.read();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EBADMSG);
  EXPECT_NE(bad.error().message.find("bad frame magic 0x5a5a5a5a"), std::string::npos)
      << bad.error().message;
  EXPECT_NE(bad.error().message.find("ring offset " + std::to_string(at)), std::string::npos)
      << bad.error().message;
  auto f2 = consumer.read();
  ASSERT_TRUE(f2.ok()) << f2.error().message;
  EXPECT_EQ(f2->type, 2U);
  EXPECT_EQ(f2->payload, vec_of("after"));
  EXPECT_EQ(consumer.read().error().code, EAGAIN);
  EXPECT_EQ(consumer.bad_frames(), 1U);
  EXPECT_EQ(consumer.skipped_bytes(), 40U);
}

TEST(ControlRing, TruncatedFrameFollowedByValidFrame) {
  Ring ring(1024);
  ControlRing consumer = attach_ok(ring.area);
  // Header claims 200 bytes of payload, but only 8 follow before the next frame.
  const ControlFrameHeader h{kControlFrameMagic, 9, 200, 0};
  ring.area.poke(0, &h, sizeof h);
  std::vector<std::byte> eight(8, std::byte{0x11});
  ring.area.poke(sizeof h, eight.data(), eight.size());
  ring.area.header().producer.store(24);
  ControlRing producer = attach_ok(ring.area);
  ASSERT_TRUE(producer.write(3, pattern(3, 50)).ok());

  auto bad = consumer.read();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EBADMSG);
  EXPECT_NE(bad.error().message.find("truncated"), std::string::npos) << bad.error().message;
  auto f = consumer.read();
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->type, 3U);
  EXPECT_EQ(f->payload, pattern(3, 50));
}

TEST(ControlRing, TruncatedFrameAtProducerIndexSkipsToIt) {
  Ring ring(1024);
  ControlRing consumer = attach_ok(ring.area);
  const ControlFrameHeader h{kControlFrameMagic, 9, 64, 0};
  ring.area.poke(0, &h, sizeof h);
  ring.area.header().producer.store(32);

  auto bad = consumer.read();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EBADMSG);
  EXPECT_NE(bad.error().message.find("producer index"), std::string::npos) << bad.error().message;
  EXPECT_EQ(consumer.read().error().code, EAGAIN);
  EXPECT_EQ(ring.area.header().consumer.load(), 32U);

  ControlRing producer = attach_ok(ring.area);
  ASSERT_TRUE(producer.write(4, pattern(4, 10)).ok());
  auto f = consumer.read();
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->payload, pattern(4, 10));
}

TEST(ControlRing, LengthBeyondCapacityIsRejected) {
  Ring ring(256);
  ControlRing consumer = attach_ok(ring.area);
  const ControlFrameHeader h{kControlFrameMagic, 1, 0xFFFF'FFF0U, 0};
  ring.area.poke(0, &h, sizeof h);
  ring.area.header().producer.store(16);
  auto bad = consumer.read();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EBADMSG);
  EXPECT_NE(bad.error().message.find("exceeds"), std::string::npos) << bad.error().message;
  EXPECT_EQ(consumer.read().error().code, EAGAIN);
}

TEST(ControlRing, CrcFlipIsDetectedAndNextFrameDelivered) {
  Ring ring(1024);
  ControlRing r = attach_ok(ring.area);
  ASSERT_TRUE(r.write(1, pattern(1, 32)).ok());
  ASSERT_TRUE(r.write(2, pattern(2, 32)).ok());
  ring.area.data()[kControlFrameHeaderSize + 5] ^= std::byte{0x04};  // one bit of frame 1

  auto bad = r.read();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EBADMSG);
  EXPECT_NE(bad.error().message.find("CRC mismatch"), std::string::npos) << bad.error().message;
  EXPECT_NE(bad.error().message.find("ring offset 0"), std::string::npos) << bad.error().message;
  auto f = r.read();
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->type, 2U);
  EXPECT_EQ(f->payload, pattern(2, 32));
  // The ring keeps working afterwards, across the wrap.
  for (std::uint64_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(r.write(5, pattern(i, 90)).ok());
    auto g = r.read();
    ASSERT_TRUE(g.ok()) << g.error().message;
    EXPECT_EQ(g->payload, pattern(i, 90));
  }
}

TEST(ControlRing, ProducerIndexBeyondCapacityBreaksRingForGood) {
  Ring ring(256);
  ControlRing r = attach_ok(ring.area);
  ASSERT_TRUE(r.write(1, pattern(1, 8)).ok());
  ring.area.header().producer.store(256 + 64);  // more than capacity ahead of the consumer
  auto e = r.read();
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, EPROTO);
  EXPECT_NE(e.error().message.find("broken"), std::string::npos) << e.error().message;
  EXPECT_TRUE(r.broken());

  ring.area.header().producer.store(24);  // even a sane value later does not un-break it
  EXPECT_EQ(r.read().error().code, EPROTO);
  EXPECT_EQ(r.write(1, pattern(2, 8)).code(), EPROTO);
}

TEST(ControlRing, ProducerIndexBehindConsumerOrMisalignedBreaksRing) {
  {
    Ring ring(256);
    ControlRing r = attach_ok(ring.area);
    ASSERT_TRUE(r.write(1, pattern(1, 8)).ok());
    ASSERT_TRUE(r.read().ok());
    ring.area.header().producer.store(8);
    EXPECT_EQ(r.read().error().code, EPROTO);
  }
  {
    Ring ring(256);
    ControlRing r = attach_ok(ring.area);
    ring.area.header().producer.store(20);
    EXPECT_EQ(r.read().error().code, EPROTO);
  }
}

TEST(ControlRing, ConsumerIndexCorruptionBreaksProducer) {
  Ring ring(256);
  ControlRing r = attach_ok(ring.area);
  ASSERT_TRUE(r.write(1, pattern(1, 8)).ok());
  ring.area.header().consumer.store(4096);  // ahead of everything the producer wrote
  Status s = r.write(1, pattern(2, 8));
  EXPECT_EQ(s.code(), EPROTO);
  EXPECT_NE(s.message().find("consumer index 4096"), std::string::npos) << s.message();
  EXPECT_TRUE(r.broken());
}

TEST(ControlRing, TwoThreads100kFrames) {
  constexpr std::uint64_t kFrames = 100'000;
  Ring ring(4096);
  ControlRing producer = attach_ok(ring.area);
  ControlRing consumer = attach_ok(ring.area);
  std::atomic<bool> failed{false};

  std::thread writer([&] {
    for (std::uint64_t i = 0; i < kFrames && !failed.load(std::memory_order_relaxed);) {
      auto p = pattern(i, static_cast<std::size_t>((i * 37) % 500));
      Status s = producer.write(static_cast<std::uint32_t>(i), p);
      if (s.ok()) {
        ++i;
      } else if (s.code() == EAGAIN) {
        std::this_thread::yield();
      } else {
        ADD_FAILURE() << s.message();
        failed = true;
      }
    }
  });

  ControlRing::Frame f;
  std::uint64_t received = 0;
  while (received < kFrames && !failed.load(std::memory_order_relaxed)) {
    Status s = consumer.read_into(f);
    if (s.code() == EAGAIN) {
      std::this_thread::yield();
      continue;
    }
    if (!s.ok()) {
      ADD_FAILURE() << s.message();
      failed = true;
      break;
    }
    if (f.type != static_cast<std::uint32_t>(received) ||
        f.payload != pattern(received, static_cast<std::size_t>((received * 37) % 500))) {
      ADD_FAILURE() << "frame " << received << " has wrong content";
      failed = true;
      break;
    }
    ++received;
  }
  writer.join();
  EXPECT_EQ(received, kFrames);
  EXPECT_EQ(consumer.read().error().code, EAGAIN);
}

}  // namespace
}  // namespace tosec::rpc
