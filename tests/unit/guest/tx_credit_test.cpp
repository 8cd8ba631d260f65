#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "rx_path.h"

namespace tosec::guest {
namespace {

TEST(TxCredit, GrantsUpToTheLimit) {
  TxCredit c;
  c.set_limit(100);
  EXPECT_EQ(c.acquire(60), 60U);
  EXPECT_EQ(c.acquire(60), 40U);  // partial grant
  EXPECT_EQ(c.acquire(1), 0U);    // exhausted
  EXPECT_EQ(c.inflight(), 100U);
  c.release(30);
  EXPECT_EQ(c.acquire(100), 30U);
}

TEST(TxCredit, ReleaseNeverUnderflows) {
  TxCredit c;
  c.set_limit(10);
  EXPECT_EQ(c.acquire(5), 5U);
  c.reset();     // fork child: the parent's sends are not ours
  c.release(5);  // the completion of a send issued before reset
  EXPECT_EQ(c.inflight(), 0U);
  EXPECT_EQ(c.acquire(10), 10U);
}

TEST(TxCredit, ShrinkingTheLimitBlocksUntilDrained) {
  TxCredit c;
  c.set_limit(100);
  EXPECT_EQ(c.acquire(80), 80U);
  c.set_limit(50);
  EXPECT_EQ(c.acquire(1), 0U);
  c.release(40);
  EXPECT_EQ(c.acquire(100), 10U);
}

TEST(TxCredit, ConcurrentSendersNeverExceedTheLimit) {
  TxCredit c;
  c.set_limit(1000);
  std::vector<std::thread> ts;
  std::atomic<std::size_t> granted{0};
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        const std::size_t g = c.acquire(7);
        EXPECT_LE(c.inflight(), 1000U);
        if (g > 0) c.release(g);
        granted += g;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.inflight(), 0U);
  EXPECT_GT(granted.load(), 0U);
}

}  // namespace
}  // namespace tosec::guest
