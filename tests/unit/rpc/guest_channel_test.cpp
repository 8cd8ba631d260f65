#include "tosec/rpc/guest_channel.h"

#include <gtest/gtest.h>

#include <cstring>

#include "test_region.h"

namespace tosec::rpc {
namespace {

GuestChannelConfig small() { return {4, 16, 32, 8, 2048, 4, 16}; }

class GuestChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto layout = guest_region_layout(small());
    buf = std::make_unique<test::SharedBuffer>(layout.pow2_size());
    ASSERT_TRUE(layout.format(buf->bytes()).ok());
    view = std::move(*RegionView::attach(buf->bytes()));
    ASSERT_TRUE(format_guest_channel(view, small()).ok());
  }
  std::unique_ptr<test::SharedBuffer> buf;
  RegionView view;
};

TEST_F(GuestChannelTest, GuestSeesTheTOEsGeometry) {
  auto g = GuestChannel::attach_guest(view);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->config().lanes, 4U);
  EXPECT_EQ(g->config().max_sockets, 32U);
  EXPECT_EQ(g->tx_pool().chunk_count(), 16U);
  EXPECT_EQ(g->lane_tx_first(3), 12U);
}

TEST_F(GuestChannelTest, LaneRingsConnectGuestAndTOE) {
  auto toe = GuestChannel::attach_toe(view, small());
  auto guest = GuestChannel::attach_guest(view);
  auto req_g = guest->lane_ring(2, true, RingEnd::kProducer);
  auto req_t = toe->lane_ring(2, true, RingEnd::kConsumer);
  auto cpl_t = toe->lane_ring(2, false, RingEnd::kProducer);
  auto cpl_g = guest->lane_ring(2, false, RingEnd::kConsumer);
  ASSERT_TRUE(req_g.ok() && req_t.ok() && cpl_t.ok() && cpl_g.ok());
  Descriptor d{};
  d.op = static_cast<std::uint16_t>(Op::kListen);
  d.request_id = 77;
  ASSERT_EQ(req_g->enqueue_burst(&d, 1), 1U);
  Descriptor got{};
  ASSERT_EQ(req_t->dequeue_burst(&got, 1), 1U);
  EXPECT_EQ(got.request_id, 77U);
  EXPECT_EQ(cpl_g->available(), 0U);  // the two directions are distinct rings
  EXPECT_FALSE(guest->lane_ring(4, true, RingEnd::kProducer).ok());
}

TEST_F(GuestChannelTest, SocketSlotsAndRxRingsAreDistinct) {
  auto toe = GuestChannel::attach_toe(view, small());
  auto guest = GuestChannel::attach_guest(view);
  toe->slot(5)->generation.store(9);
  EXPECT_EQ(guest->slot(5)->generation.load(), 9U);
  EXPECT_EQ(guest->slot(6)->generation.load(), 0U);
  EXPECT_EQ(guest->slot(32), nullptr);
  auto p = toe->rx_ring(5, RingEnd::kProducer);
  auto c6 = guest->rx_ring(6, RingEnd::kConsumer);
  auto c5 = guest->rx_ring(5, RingEnd::kConsumer);
  RxEntry e{3, 100};
  ASSERT_EQ(p->enqueue_burst(&e, 1), 1U);
  EXPECT_EQ(c6->available(), 0U);
  ASSERT_EQ(c5->available(), 1U);
}

TEST_F(GuestChannelTest, TamperedGeometryIsRejected) {
  auto geo = view.find("geometry", AreaKind::kRaw);
  auto* g = reinterpret_cast<GuestGeometry*>(view.area_bytes(*geo).data());
  g->max_sockets = 1'000'000;  // the guest claims more sockets than the area holds
  auto r = GuestChannel::attach_guest(view);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("'sockets'"), std::string::npos) << r.error().message;
  g->max_sockets = 32;
  g->version = 7;
  EXPECT_NE(GuestChannel::attach_guest(view).error().message.find("version 7"), std::string::npos);
}

TEST(GuestChannelConfig, BadConfigNamesTheField) {
  GuestChannelConfig c = small();
  c.ring_slots = 100;
  auto layout = guest_region_layout(small());
  test::SharedBuffer buf(layout.pow2_size());
  ASSERT_TRUE(layout.format(buf.bytes()).ok());
  auto v = RegionView::attach(buf.bytes());
  auto s = format_guest_channel(*v, c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("ring_slots 100"), std::string::npos);
}

TEST(GuestChannelConfig, DefaultLayoutFitsInSixtyFourMiB) {
  EXPECT_LE(guest_region_layout(GuestChannelConfig{}).pow2_size(), 64ULL << 20);
}

}  // namespace
}  // namespace tosec::rpc
