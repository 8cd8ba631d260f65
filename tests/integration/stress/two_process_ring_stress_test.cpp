// Two *processes* (not threads) stream millions of slots through a ring in a POSIX shm region,
// each with its own mapping at its own address, woken through eventfd doorbells. The consumer
// checks every sequence number and checksum. A lost wake-up shows up as a timeout, a torn or
// reordered slot as a checksum or sequence failure.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <string>

#include "tosec/rpc/notifier.h"
#include "tosec/rpc/region.h"
#include "tosec/rpc/shm_mapping.h"
#include "tosec/rpc/spsc_ring.h"

namespace tosec::rpc {
namespace {

struct Item {
  std::uint64_t seq;
  std::uint64_t payload[5];
  std::uint64_t sum;
};

std::uint64_t checksum(const Item& it) {
  std::uint64_t s = it.seq * 0x9E3779B97F4A7C15ULL;
  for (auto p : it.payload) s = (s ^ p) * 0x100000001B3ULL;
  return s;
}

constexpr std::int64_t kWaitTimeout = 10'000'000'000;  // a lost wake-up, not slowness

// Consumer process body: exit code 0 on success, 2+ on each kind of failure.
int consume(int shm_fd, EventfdDoorbells& db, std::uint64_t n, SpinPolicy policy) {
  auto map = ShmMapping::map(shm_fd);  // a fresh mapping, at another address than the parent's
  if (!map) return 2;
  auto view = RegionView::attach(map->bytes());
  if (!view) return 3;
  auto in = SpscRing::attach(*view, "data", RingEnd::kConsumer);
  auto credit = SpscRing::attach(*view, "credit", RingEnd::kProducer);
  if (!in || !credit) return 4;
  Waiter w(db, 0, policy);
  std::array<Item, 32> batch{};
  std::uint64_t expect = 0;
  while (expect < n) {
    auto r = w.wait(
        in->consumer_sleeping(), [&] { return in->available() > 0; }, kWaitTimeout);
    if (!r || !*r) return 5;  // lost wake-up
    const auto got = in->dequeue_burst(batch.data(), 32);
    for (std::uint32_t i = 0; i < got; ++i) {
      if (batch[i].seq != expect) return 6;
      if (batch[i].sum != checksum(batch[i])) return 7;
      ++expect;
    }
    // Tell a producer blocked on a full ring that there is room again.
    if (!notify(in->producer_sleeping(), db, 1, 1)) return 8;
  }
  return in->broken() ? 9 : 0;
}

void run(std::uint64_t n, SpinPolicy policy) {
  const std::string name = "/tosec-stress-" + std::to_string(::getpid());
  RegionLayout layout;
  layout.add_ring("data", 256, sizeof(Item)).add_ring("credit", 8, 8);
  auto fd = create_posix_shm(name, layout.pow2_size());
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  ::shm_unlink(name.c_str());  // the fds keep it alive; nothing left behind on failure
  auto map = ShmMapping::map(fd->get());
  ASSERT_TRUE(map.ok());
  ASSERT_TRUE(layout.format(map->bytes()).ok());

  // One "peer" (id 1) with two vectors: 0 wakes the consumer, 1 wakes the producer. Created
  // before fork, so both processes hold the same eventfds, as ivshmem peers would.
  EventfdDoorbells db;
  ASSERT_TRUE(db.create_own(1, 2).ok());

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(consume(fd->get(), db, n, policy));

  auto view = RegionView::attach(map->bytes());
  auto out = SpscRing::attach(*view, "data", RingEnd::kProducer);
  ASSERT_TRUE(out.ok());
  Waiter room(db, 1, policy);
  std::array<Item, 16> batch{};
  std::uint64_t next = 0;
  bool ok = true;
  while (next < n && ok) {
    const auto want = static_cast<std::uint32_t>(std::min<std::uint64_t>(16, n - next));
    for (std::uint32_t i = 0; i < want; ++i) {
      auto& it = batch[i];
      it.seq = next + i;
      for (std::uint64_t k = 0; k < 5; ++k) it.payload[k] = (next + i) * 7 + k;
      it.sum = checksum(it);
    }
    const auto put = out->enqueue_burst(batch.data(), want);
    next += put;
    if (put > 0 && !notify(out->consumer_sleeping(), db, 1, 0)) ok = false;
    if (put < want) {
      auto r = room.wait(
          out->producer_sleeping(), [&] { return out->free_slots() > 0; }, kWaitTimeout);
      if (!r || !*r) ok = false;
    }
  }
  int status = 0;
  if (!ok) ::kill(child, SIGKILL);
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(ok) << "producer timed out: lost wake-up on the credit path";
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "consumer failure code " << WEXITSTATUS(status)
                                    << " (5 lost wake-up, 6 order, 7 torn slot)";
}

TEST(TwoProcessRing, SleepOnlyTwoMillionSlots) { run(2'000'000, SpinPolicy::sleep_only()); }
TEST(TwoProcessRing, AdaptiveSpinTwoMillionSlots) { run(2'000'000, SpinPolicy{}); }
TEST(TwoProcessRing, SpinThenSleepTwoMillionSlots) {
  run(2'000'000, SpinPolicy{5'000, 5'000, 5'000, false});
}

}  // namespace
}  // namespace tosec::rpc
