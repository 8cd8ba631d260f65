#include "tosec/rpc/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstring>

#include "test_region.h"

namespace tosec::rpc {
namespace {

TEST(BufferPool, CheckedRejectsOutOfRangeAndOverflow) {
  test::SharedBuffer buf(1 << 16);
  RegionLayout l;
  l.add_pool("p", 4, 1024);
  ASSERT_TRUE(l.format(buf.bytes()).ok());
  auto pool = BufferPool::attach(*RegionView::attach(buf.bytes()), "p");
  ASSERT_TRUE(pool.ok());
  EXPECT_TRUE(pool->checked({3, 1000, 24}).ok());
  EXPECT_EQ(pool->checked({3, 1000, 24})->size(), 24U);
  EXPECT_FALSE(pool->checked({4, 0, 1}).ok());
  EXPECT_FALSE(pool->checked({0, 1000, 25}).ok());
  EXPECT_FALSE(pool->checked({0, 2000, 0}).ok());
  EXPECT_FALSE(pool->checked({0, 0xFFFFFFF0U, 0x20}).ok());  // would wrap in 32 bits
  auto e = pool->checked({9, 0, 1});
  EXPECT_NE(e.error().message.find("chunk 9 out of range"), std::string::npos);
  EXPECT_FALSE(pool->valid({0, 1, 1024}));
  EXPECT_TRUE(pool->valid({0, 1024, 0}));
}

TEST(BufferPool, ChunksDoNotOverlap) {
  test::SharedBuffer buf(1 << 16);
  RegionLayout l;
  l.add_pool("p", 4, 1024);
  ASSERT_TRUE(l.format(buf.bytes()).ok());
  auto pool = BufferPool::attach(*RegionView::attach(buf.bytes()), "p");
  for (std::uint32_t i = 0; i < 4; ++i)
    std::memset(pool->chunk(i).data(), static_cast<int>(i), 1024);
  for (std::uint32_t i = 0; i < 4; ++i) {
    for (auto b : pool->chunk(i)) ASSERT_EQ(static_cast<std::uint32_t>(b), i);
  }
}

TEST(ChunkLedger, DoubleTakeAndForeignGiveAreRejected) {
  ChunkLedger l(4);
  ASSERT_TRUE(l.take(1).ok());
  EXPECT_EQ(l.take(1).code(), EALREADY);
  EXPECT_EQ(l.give(2).code(), EPERM);
  EXPECT_EQ(l.take(4).code(), EINVAL);
  EXPECT_EQ(l.held_count(), 1U);
  ASSERT_TRUE(l.give(1).ok());
  EXPECT_EQ(l.held_count(), 0U);
}

TEST(ChunkAllocator, LendReclaimCycleAndExhaustion) {
  ChunkAllocator a(3);
  std::vector<std::uint32_t> got;
  for (int i = 0; i < 3; ++i) got.push_back(*a.allocate());
  EXPECT_EQ(a.allocate().error().code, ENOBUFS);
  ASSERT_TRUE(a.lend(got[0]).ok());
  EXPECT_EQ(a.lend(got[0]).code(), EPERM);     // already lent
  EXPECT_EQ(a.reclaim(got[1]).code(), EPERM);  // allocated, never lent: peer cannot free it
  EXPECT_EQ(a.reclaim(77).code(), EINVAL);
  ASSERT_TRUE(a.reclaim(got[0]).ok());
  EXPECT_EQ(a.reclaim(got[0]).code(), EPERM);  // double return
  EXPECT_EQ(a.free_count(), 1U);
  ASSERT_TRUE(a.free(got[1]).ok());
  EXPECT_EQ(a.free(got[1]).code(), EPERM);
  ASSERT_TRUE(a.lend(got[2]).ok());
  a.reclaim_all();
  EXPECT_EQ(a.free_count(), 3U);
  EXPECT_EQ(a.lent_count(), 0U);
}

}  // namespace
}  // namespace tosec::rpc
