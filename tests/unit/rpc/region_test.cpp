#include "tosec/rpc/region.h"

#include <gtest/gtest.h>

#include <cstring>

#include "test_region.h"

namespace tosec::rpc {
namespace {

RegionLayout guest_like_layout() {
  RegionLayout l;
  l.add_ring("req", 256, 64)
      .add_ring("cpl", 256, 64)
      .add_byte_ring("ctl.g2t", 4096)
      .add_byte_ring("ctl.t2g", 4096)
      .add_pool("pool.tx", 64, 2048)
      .add_pool("pool.rx", 64, 2048);
  return l;
}

TEST(Region, FormatThenAttachFindsEveryArea) {
  auto layout = guest_like_layout();
  test::SharedBuffer buf(layout.pow2_size());
  ASSERT_TRUE(layout.format(buf.bytes()).ok());
  auto v = RegionView::attach(buf.bytes());
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v->areas().size(), 6U);
  auto req = v->find("req", AreaKind::kRing);
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->count, 256U);
  EXPECT_EQ(req->offset % 64, 0U);
  auto tx = v->find("pool.tx", AreaKind::kPool);
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(tx->offset % 4096, 0U);
  EXPECT_EQ(v->generation(), 1U);
}

TEST(Region, LayoutIsPositionIndependent) {
  // The same bytes copied to another address attach identically: offsets, not pointers.
  auto layout = guest_like_layout();
  test::SharedBuffer a(layout.pow2_size()), b(layout.pow2_size());
  ASSERT_TRUE(layout.format(a.bytes()).ok());
  std::memcpy(b.data(), a.data(), a.bytes().size());
  auto va = RegionView::attach(a.bytes());
  auto vb = RegionView::attach(b.bytes());
  ASSERT_TRUE(va.ok() && vb.ok());
  ASSERT_EQ(va->areas().size(), vb->areas().size());
  for (std::size_t i = 0; i < va->areas().size(); ++i) {
    EXPECT_EQ(va->areas()[i].offset, vb->areas()[i].offset);
  }
}

TEST(Region, ReformatBumpsGeneration) {
  auto layout = guest_like_layout();
  test::SharedBuffer buf(layout.pow2_size());
  ASSERT_TRUE(layout.format(buf.bytes()).ok());
  ASSERT_TRUE(layout.format(buf.bytes()).ok());
  EXPECT_EQ(RegionView::attach(buf.bytes())->generation(), 2U);
}

TEST(Region, RejectsUnformattedRegionNamingTheMagic) {
  test::SharedBuffer buf(1 << 16);
  auto v = RegionView::attach(buf.bytes());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, EPROTO);
  EXPECT_NE(v.error().message.find("magic"), std::string::npos) << v.error().message;
}

TEST(Region, RejectsLayoutThatDoesNotFit) {
  auto layout = guest_like_layout();
  test::SharedBuffer buf(1 << 16);
  auto s = layout.format(buf.bytes());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ENOSPC);
}

TEST(Region, RejectsBadGeometryAtFormat) {
  test::SharedBuffer buf(1 << 20);
  RegionLayout l;
  l.add_ring("req", 100, 64);  // not a power of two
  auto s = l.format(buf.bytes());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("power of two"), std::string::npos) << s.message();
  RegionLayout dup;
  dup.add_raw("x", 64).add_raw("x", 64);
  EXPECT_NE(dup.format(buf.bytes()).message().find("twice"), std::string::npos);
  RegionLayout longname;
  longname.add_raw("a-name-that-is-far-too-long", 64);
  EXPECT_FALSE(longname.format(buf.bytes()).ok());
}

class CorruptHeader : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(guest_like_layout().format(buf.bytes()).ok()); }
  RegionHeader& h() { return *reinterpret_cast<RegionHeader*>(buf.data()); }
  std::string attach_error() {
    auto v = RegionView::attach(buf.bytes());
    return v.ok() ? "" : v.error().message;
  }
  test::SharedBuffer buf{1 << 20};
};

TEST_F(CorruptHeader, WrongVersion) {
  h().layout_version = 99;
  EXPECT_NE(attach_error().find("layout version 99"), std::string::npos);
}

TEST_F(CorruptHeader, TotalSizeLargerThanMapping) {
  h().total_size = 1ULL << 40;
  EXPECT_NE(attach_error().find("mapping has"), std::string::npos);
}

TEST_F(CorruptHeader, NotReady) {
  h().state.store(RegionState::kFormatting);
  EXPECT_NE(attach_error().find("not ready"), std::string::npos);
}

TEST_F(CorruptHeader, AreaOutOfBounds) {
  h().areas[5].offset = (1 << 20) - 64;
  EXPECT_NE(attach_error().find("outside the region"), std::string::npos) << attach_error();
}

TEST_F(CorruptHeader, AreaOffsetOverflow) {
  h().areas[0].offset = ~0ULL - 63;
  EXPECT_NE(attach_error().find("outside the region"), std::string::npos) << attach_error();
}

TEST_F(CorruptHeader, OverlappingAreas) {
  h().areas[1].offset = h().areas[0].offset;
  EXPECT_NE(attach_error().find("overlaps"), std::string::npos) << attach_error();
}

TEST_F(CorruptHeader, SizeNotMatchingGeometry) {
  h().areas[0].count = 512;
  EXPECT_NE(attach_error().find("does not match its geometry"), std::string::npos);
}

TEST_F(CorruptHeader, UnterminatedName) {
  std::memset(h().areas[0].name, 'A', kAreaNameLen);
  EXPECT_NE(attach_error().find("name"), std::string::npos);
}

TEST_F(CorruptHeader, TooManyAreas) {
  h().area_count = 1000;
  EXPECT_NE(attach_error().find("area count 1000"), std::string::npos);
}

TEST_F(CorruptHeader, ScribbleAfterAttachDoesNotMoveTheView) {
  auto v = RegionView::attach(buf.bytes());
  ASSERT_TRUE(v.ok());
  const auto before = v->find("pool.rx", AreaKind::kPool)->offset;
  h().areas[5].offset = 0;  // an untrusted peer rewrites the header later
  EXPECT_EQ(v->find("pool.rx", AreaKind::kPool)->offset, before);
}

TEST(Region, FindChecksKind) {
  auto layout = guest_like_layout();
  test::SharedBuffer buf(layout.pow2_size());
  ASSERT_TRUE(layout.format(buf.bytes()).ok());
  auto v = RegionView::attach(buf.bytes());
  auto wrong = v->find("req", AreaKind::kPool);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message.find("expected a pool"), std::string::npos);
  EXPECT_EQ(v->find("nope", AreaKind::kRing).error().code, ENOENT);
}

TEST(Region, PeerTableClaimAndRelease) {
  auto layout = guest_like_layout();
  test::SharedBuffer buf(layout.pow2_size());
  ASSERT_TRUE(layout.format(buf.bytes()).ok());
  auto v = RegionView::attach(buf.bytes());
  auto a = v->claim_peer(3, PeerRole::kTovm, "tovm0", 100);
  auto b = v->claim_peer(4, PeerRole::kGuest, "guest0", 101);
  ASSERT_TRUE(a.ok() && b.ok());
  v->heartbeat(*b);
  auto peers = v->peers();
  ASSERT_EQ(peers.size(), 2U);
  EXPECT_EQ(peers[1].name, "guest0");
  EXPECT_EQ(peers[1].heartbeat, 1U);
  v->release_peer(*a);
  EXPECT_EQ(v->peers().size(), 1U);
  for (std::size_t i = 0; i < kMaxPeers - 1; ++i)
    ASSERT_TRUE(v->claim_peer(9, PeerRole::kSvm, "s", 1).ok());
  EXPECT_EQ(v->claim_peer(9, PeerRole::kSvm, "s", 1).error().code, ENOSPC);
}

}  // namespace
}  // namespace tosec::rpc
