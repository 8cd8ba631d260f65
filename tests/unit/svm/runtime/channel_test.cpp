// The inspection region's wire contract (rpc/include/tosec/rpc/inspection_channel.h).
#include <gtest/gtest.h>

#include "test_region.h"
#include "tosec/rpc/inspection_channel.h"

namespace tosec::rpc {
namespace {

InspectionConfig cfg() {
  InspectionConfig c;
  c.nodes = 4;
  c.ring_slots = 64;
  c.chunk_size = 1024;
  c.chunks = 32;
  c.control_bytes = 4096;
  return c;
}

TEST(InspectionChannel, SvmAttachReadsThePublishedGeometry) {
  test::SharedBuffer buf(inspection_region_layout(cfg()).pow2_size());
  // Not formatted yet: attaching fails with an error, not a crash.
  EXPECT_FALSE(RegionView::attach(buf.bytes()).ok());
  ASSERT_TRUE(inspection_region_layout(cfg()).format(buf.bytes()).ok());
  auto view = RegionView::attach(buf.bytes());
  ASSERT_TRUE(view.ok());
  auto early = InspectionChannel::attach_svm(*view);
  ASSERT_FALSE(early.ok());  // geometry not published yet
  EXPECT_NE(early.error().message.find("version 0"), std::string::npos);
  ASSERT_TRUE(format_inspection_channel(*view, cfg()).ok());
  auto ch = InspectionChannel::attach_svm(*view);
  ASSERT_TRUE(ch.ok()) << ch.error().message;
  EXPECT_EQ(ch->nodes(), 4U);
  EXPECT_EQ(ch->pool().chunk_count(), 32U);
  // Every mesh ring but the diagonal, and control rings for SVM nodes only.
  for (std::uint16_t a = 0; a < 4; ++a) {
    for (std::uint16_t b = 0; b < 4; ++b) {
      EXPECT_EQ(ch->ring(a, b, RingEnd::kProducer).ok(), a != b) << a << "->" << b;
    }
  }
  EXPECT_FALSE(ch->ring(0, 4, RingEnd::kProducer).ok());
  EXPECT_FALSE(ch->control(0, true).ok());
  EXPECT_TRUE(ch->control(3, false).ok());
  EXPECT_FALSE(ch->control(4, true).ok());
  // Node slots: unknown until announced.
  EXPECT_FALSE(ch->doorbell_of(2).ok());
  EXPECT_EQ(ch->announce(2, 7, 3, "ids0"), 1U);
  auto where = ch->doorbell_of(2);
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(where->first, 7);
  EXPECT_EQ(where->second, 3);
  EXPECT_EQ(ch->announce(2, 8, 0, "ids0"), 2U);  // re-attach: a new incarnation
  ch->retire(2);
  EXPECT_FALSE(ch->doorbell_of(2).ok());
}

TEST(InspectionChannel, ConfigIsChecked) {
  auto c = cfg();
  c.nodes = 17;
  EXPECT_NE(check_inspection_config(c).message().find("nodes 17"), std::string::npos);
  c = cfg();
  c.ring_slots = 100;
  EXPECT_NE(check_inspection_config(c).message().find("ring_slots"), std::string::npos);
  c = cfg();
  c.chunk_size = 1000;
  EXPECT_FALSE(check_inspection_config(c).ok());
}

TEST(InspectionChannel, DescriptorValidationNamesTheField) {
  test::SharedBuffer buf(inspection_region_layout(cfg()).pow2_size());
  ASSERT_TRUE(inspection_region_layout(cfg()).format(buf.bytes()).ok());
  auto view = RegionView::attach(buf.bytes());
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(format_inspection_channel(*view, cfg()).ok());
  auto ch = InspectionChannel::attach_toe(*view, cfg());
  ASSERT_TRUE(ch.ok());
  InspectDesc d{};
  d.kind = InspectKind::kPayload;
  d.from_node = 1;
  d.chunk = 31;
  d.length = 1024;
  EXPECT_EQ(validate_inspect_desc(d, 1, ch->pool(), 8), "");
  d.offset = 1;
  EXPECT_NE(validate_inspect_desc(d, 1, ch->pool(), 8).find("offset 1 length 1024"),
            std::string::npos);
  d.offset = 0;
  d.chunk = 32;
  EXPECT_NE(validate_inspect_desc(d, 1, ch->pool(), 8).find("chunk 32"), std::string::npos);
  d.chunk = 0;
  EXPECT_NE(validate_inspect_desc(d, 2, ch->pool(), 8).find("from_node"), std::string::npos);
  d.step = 8;
  EXPECT_NE(validate_inspect_desc(d, 1, ch->pool(), 8).find("step 8"), std::string::npos);
  d.step = 0;
  d.direction = 2;
  EXPECT_NE(validate_inspect_desc(d, 1, ch->pool(), 8).find("direction"), std::string::npos);
  d.direction = 0;
  d.kind = InspectKind::kVerdict;
  d.chunk = 999;  // verdicts carry no payload reference that is used: not checked
  EXPECT_EQ(validate_inspect_desc(d, 1, ch->pool(), 8), "");
  d.action = static_cast<InspectAction>(7);
  EXPECT_NE(validate_inspect_desc(d, 1, ch->pool(), 8).find("action"), std::string::npos);
}

}  // namespace
}  // namespace tosec::rpc
