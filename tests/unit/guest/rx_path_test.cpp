// The rx consume logic against a guest region formatted here, with the test acting as the TOE:
// it pushes RxEntry into a socket's rx ring and writes the bytes into rx chunks.
#include "rx_path.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "formatted_guest_region.h"
#include "tosec/rpc/guest_channel.h"

namespace tosec::guest {
namespace {

using rpc::GuestChannel;
using rpc::GuestChannelConfig;
using rpc::RxEntry;

class RxPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_.lanes = 2;
    cfg_.ring_slots = 8;
    cfg_.max_sockets = 4;
    cfg_.socket_rx_entries = 4;
    cfg_.chunk_size = 256;
    cfg_.tx_chunks_per_lane = 4;
    cfg_.rx_chunks = 16;
    ASSERT_EQ(region_.format(cfg_), "");
    auto ring = toe_.rx_ring(kSock, rpc::RingEnd::kProducer);
    ASSERT_TRUE(ring);
    producer_ = rpc::TypedRing<RxEntry>(std::move(*ring));
    rx_ = make_rx_ring(guest_, kSock);
  }

  // TOE side: lends rx chunk `chunk` holding `bytes` to the socket.
  bool push(std::uint32_t chunk, const std::string& bytes) {
    auto c = toe_.rx_pool().chunk(chunk);
    std::memcpy(c.data(), bytes.data(), bytes.size());
    return producer_.enqueue(RxEntry{chunk, static_cast<std::uint32_t>(bytes.size())});
  }
  bool push_dgram(std::uint32_t chunk, const std::string& payload, std::uint16_t port) {
    rpc::SlotAddress a{};
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    in.sin_addr.s_addr = htonl(0x7F000001);
    a.length = sizeof in;
    std::memcpy(a.bytes, &in, sizeof in);
    std::string b(reinterpret_cast<const char*>(&a), sizeof a);
    return push(chunk, b + payload);
  }

  struct Read {
    std::string data;
    RxConsumeResult res;
    std::vector<std::uint32_t> returned;
  };
  Read read(std::size_t n, bool peek = false, bool dgram = false, std::size_t split = 0) {
    Read r;
    r.data.assign(n, '\0');
    std::vector<iovec> iov;
    if (split > 0 && split < n) {
      iov.push_back({r.data.data(), split});
      iov.push_back({r.data.data() + split, n - split});
    } else {
      iov.push_back({r.data.data(), n});
    }
    RxLock lk(rx_.slot->rx_lock, rpc::rx_lock_owner(0));
    r.res = rx_consume(rx_, iov, peek, dgram, [&](std::uint32_t c) { r.returned.push_back(c); });
    r.data.resize(dgram ? std::min(n, r.res.dgram_len) : r.res.copied);
    return r;
  }

  static constexpr std::uint32_t kSock = 2;
  GuestChannelConfig cfg_;
  test::FormattedGuestRegion region_;
  GuestChannel& toe_ = region_.toe();
  GuestChannel& guest_ = region_.guest();
  rpc::TypedRing<RxEntry> producer_;
  RxRing rx_;
};

TEST_F(RxPathTest, EmptyRingReadsNothing) {
  EXPECT_TRUE(rx_.empty());
  auto r = read(10);
  EXPECT_EQ(r.res.copied, 0U);
  EXPECT_TRUE(r.returned.empty());
}

TEST_F(RxPathTest, StreamAcrossEntriesReturnsConsumedChunks) {
  ASSERT_TRUE(push(3, "hello "));
  ASSERT_TRUE(push(7, "world"));
  EXPECT_EQ(rx_readable(rx_, false), 11U);
  auto r = read(64);
  EXPECT_EQ(r.data, "hello world");
  EXPECT_EQ(r.returned, (std::vector<std::uint32_t>{3, 7}));
  EXPECT_TRUE(rx_.empty());
  EXPECT_EQ(rx_.slot->rx_offset, 0U);
}

TEST_F(RxPathTest, ChunksComeBackOnlyAfterTheTailMoved) {
  // The TOE resumes a socket paused on a full ring when a chunk comes back: by then the ring
  // must show the room, or the socket stays paused for good.
  for (std::uint32_t i = 0; i < cfg_.socket_rx_entries; ++i) ASSERT_TRUE(push(i, "abcd"));
  const std::uint32_t tail0 = rx_.ring->tail.load();
  std::vector<std::uint32_t> tails;
  std::string buf(64, '\0');
  iovec v{buf.data(), buf.size()};
  RxLock lk(rx_.slot->rx_lock, rpc::rx_lock_owner(0));
  auto r = rx_consume(rx_, std::span<const iovec>(&v, 1), false, false,
                      [&](std::uint32_t) { tails.push_back(rx_.ring->tail.load()); });
  EXPECT_EQ(r.copied, 16U);
  ASSERT_EQ(tails.size(), cfg_.socket_rx_entries);
  for (const std::uint32_t t : tails) EXPECT_EQ(t, tail0 + cfg_.socket_rx_entries);
}

TEST_F(RxPathTest, PartialReadsKeepTheOffset) {
  ASSERT_TRUE(push(1, "abcdefgh"));
  auto a = read(3);
  EXPECT_EQ(a.data, "abc");
  EXPECT_TRUE(a.returned.empty());
  EXPECT_EQ(rx_.slot->rx_offset, 3U);
  EXPECT_EQ(rx_readable(rx_, false), 5U);
  ASSERT_TRUE(push(2, "ij"));
  auto b = read(6, false, false, 2);  // scattered over two iovecs
  EXPECT_EQ(b.data, "defghi");
  EXPECT_EQ(b.returned, (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(rx_.slot->rx_offset, 1U);
  auto c = read(100);
  EXPECT_EQ(c.data, "j");
  EXPECT_EQ(c.returned, (std::vector<std::uint32_t>{2}));
  EXPECT_TRUE(rx_.empty());
}

TEST_F(RxPathTest, PeekConsumesNothing) {
  ASSERT_TRUE(push(4, "abc"));
  ASSERT_TRUE(push(5, "def"));
  (void)read(1);  // offset 1 into the head entry
  auto p = read(100, true);
  EXPECT_EQ(p.data, "bcdef");
  EXPECT_TRUE(p.returned.empty());
  EXPECT_EQ(rx_.slot->rx_offset, 1U);
  EXPECT_EQ(rx_.available(), 2U);
  auto r = read(100);
  EXPECT_EQ(r.data, "bcdef");
}

TEST_F(RxPathTest, DatagramsKeepBoundariesAndSource) {
  ASSERT_TRUE(push_dgram(8, "first datagram", 5353));
  ASSERT_TRUE(push_dgram(9, "second", 5354));
  EXPECT_EQ(rx_readable(rx_, true), 14U);
  auto t = read(5, false, true);  // truncated: the rest of the datagram is discarded
  EXPECT_TRUE(t.res.got_dgram);
  EXPECT_EQ(t.res.copied, 5U);
  EXPECT_EQ(t.res.dgram_len, 14U);
  EXPECT_EQ(t.returned, (std::vector<std::uint32_t>{8}));
  sockaddr_in from{};
  ASSERT_EQ(t.res.from.length, sizeof from);
  std::memcpy(&from, t.res.from.bytes, sizeof from);
  EXPECT_EQ(ntohs(from.sin_port), 5353);
  auto peek = read(100, true, true);
  EXPECT_EQ(peek.data, "second");
  EXPECT_TRUE(peek.returned.empty());
  auto s = read(100, false, true);
  EXPECT_EQ(s.data, "second");
  EXPECT_TRUE(rx_.empty());
}

TEST_F(RxPathTest, RingWrapsAround) {
  for (int round = 0; round < 10; ++round) {
    for (std::uint32_t i = 0; i < cfg_.socket_rx_entries; ++i) {
      ASSERT_TRUE(push(i, std::string(1, static_cast<char>('a' + i))));
    }
    EXPECT_FALSE(push(15, "x"));  // full: the TOE must wait (backpressure, never a drop)
    auto r = read(100);
    EXPECT_EQ(r.data, "abcd");
    EXPECT_EQ(r.returned.size(), cfg_.socket_rx_entries);
  }
}

TEST_F(RxPathTest, MalformedEntryIsAnErrorNotACrash) {
  ASSERT_TRUE(producer_.enqueue(RxEntry{cfg_.rx_chunks + 5, 10}));  // chunk out of range
  auto r = read(100);
  EXPECT_EQ(r.res.error, EPROTO);
  EXPECT_EQ(r.res.copied, 0U);
  EXPECT_TRUE(r.returned.empty());
}

TEST_F(RxPathTest, CorruptProducerIndexReadsAsEmpty) {
  rx_.ring->head.store(rx_.ring->tail.load() + 1000);
  EXPECT_TRUE(rx_.empty());
  EXPECT_EQ(read(10).res.copied, 0U);
}

TEST_F(RxPathTest, RxLockSerialisesConsumers) {
  // Two consumers (threads standing in for processes) drain one stream; every byte arrives
  // exactly once and in order within each read.
  constexpr int kEntries = 2000;
  std::atomic<int> produced{0};
  std::thread toe([&] {
    std::uint32_t chunk = 0;
    for (int i = 0; i < kEntries;) {
      if (push(chunk, std::string(4, static_cast<char>('0' + i % 10)))) {
        ++i;
        chunk = (chunk + 1) % cfg_.rx_chunks;
        produced = i;
      } else {
        std::this_thread::yield();
      }
    }
  });
  std::atomic<std::size_t> total{0};
  auto consumer = [&] {
    while (total.load() < std::size_t{kEntries} * 4) {
      auto r = read(3);
      total += r.res.copied;
      if (r.res.copied == 0) std::this_thread::yield();
    }
  };
  std::thread c1(consumer);
  std::thread c2(consumer);
  toe.join();
  c1.join();
  c2.join();
  EXPECT_EQ(total.load(), std::size_t{kEntries} * 4);
  EXPECT_TRUE(rx_.empty());
}

// The word names the holder's lane (+1) so that the TOE can free it when that lane dies.
TEST(RxLock, WordNamesTheHolderUntilUnlock) {
  std::atomic<std::uint32_t> w{0};
  {
    RxLock lk(w, rpc::rx_lock_owner(3));
    EXPECT_EQ(w.load(), 4U);
  }
  EXPECT_EQ(w.load(), 0U);
}

// A holder that died with the lock: the waiter marks the word, and takes the lock once the TOE
// clears it, with no wake-up (a TOE in another kernel cannot give one).
TEST(RxLock, AWaiterTakesALockClearedWithoutAWakeUp) {
  std::atomic<std::uint32_t> w{rpc::rx_lock_owner(5)};
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    RxLock lk(w, rpc::rx_lock_owner(1));
    got.store(true);
    EXPECT_EQ(w.load(), rpc::rx_lock_owner(1) | rpc::kRxLockWaiters);
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (w.load() != (rpc::rx_lock_owner(5) | rpc::kRxLockWaiters) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(w.load(), rpc::rx_lock_owner(5) | rpc::kRxLockWaiters);
  EXPECT_FALSE(got.load());
  w.store(0);  // what the TOE does when it reclaims lane 5
  waiter.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(w.load(), 0U);
}

// Unlock releases only our own lock: one the TOE freed and another lane took stays taken.
TEST(RxLock, UnlockLeavesALockThatIsNoLongerOurs) {
  std::atomic<std::uint32_t> w{0};
  {
    RxLock lk(w, rpc::rx_lock_owner(2));
    w.store(rpc::rx_lock_owner(7));  // freed by the TOE, then taken by lane 7
  }
  EXPECT_EQ(w.load(), rpc::rx_lock_owner(7));
}

TEST(RxLock, ExcludesUnderContention) {
  std::atomic<std::uint32_t> w{0};
  std::uint64_t counter = 0;  // plain: the lock is all that protects it
  constexpr int kEach = 20000;
  auto work = [&](std::uint32_t lane) {
    for (int i = 0; i < kEach; ++i) {
      RxLock lk(w, rpc::rx_lock_owner(lane));
      ++counter;
    }
  };
  std::thread a(work, 0);
  std::thread b(work, 1);
  a.join();
  b.join();
  EXPECT_EQ(counter, std::uint64_t{2} * kEach);
  EXPECT_EQ(w.load(), 0U);
}

}  // namespace
}  // namespace tosec::guest
