#include "tosec/rpc/descriptor.h"

#include <gtest/gtest.h>

#include "test_region.h"

namespace tosec::rpc {
namespace {

class DescriptorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegionLayout l;
    l.add_pool("tx", 8, 2048).add_pool("rx", 8, 2048);
    ASSERT_TRUE(l.format(buf.bytes()).ok());
    auto v = RegionView::attach(buf.bytes());
    tx = std::move(BufferPool::attach(*v, "tx").value());
    rx = std::move(BufferPool::attach(*v, "rx").value());
    limits = {16, &tx, &rx};
  }
  static Descriptor send(std::uint32_t chunk, std::uint32_t off, std::uint32_t len) {
    Descriptor d{};
    d.op = static_cast<std::uint16_t>(Op::kSend);
    d.socket = 3;
    d.pool = static_cast<std::uint16_t>(PoolId::kTx);
    d.chunk = chunk;
    d.offset = off;
    d.length = len;
    return d;
  }
  test::SharedBuffer buf{1 << 17};
  BufferPool tx, rx;
  ChannelLimits limits{};
};

TEST_F(DescriptorTest, AcceptsValidSend) {
  EXPECT_TRUE(validate_request(send(7, 0, 2048), limits).ok());
}

TEST_F(DescriptorTest, RejectsEachBadFieldByName) {
  auto msg = [&](Descriptor d) { return validate_request(d, limits).message(); };
  EXPECT_NE(msg(send(8, 0, 1)).find("chunk 8"), std::string::npos);
  EXPECT_NE(msg(send(0, 2000, 49)).find("offset+length"), std::string::npos);
  Descriptor d = send(0, 0, 1);
  d.op = 999;
  EXPECT_NE(msg(d).find("op 999"), std::string::npos);
  d = send(0, 0, 1);
  d.op = static_cast<std::uint16_t>(Op::kEvent);
  EXPECT_NE(msg(d).find("not a request"), std::string::npos);
  d = send(0, 0, 1);
  d.flags = 0x8000;
  EXPECT_NE(msg(d).find("flags"), std::string::npos);
  d = send(0, 0, 1);
  d.socket = 16;
  EXPECT_NE(msg(d).find("socket 16"), std::string::npos);
  d = send(0, 0, 1);
  d.pool = static_cast<std::uint16_t>(PoolId::kRx);  // sending from the receive pool
  EXPECT_NE(msg(d).find("pool"), std::string::npos);
  d = send(0, 0, 1);
  d.reserved1 = 1;
  EXPECT_NE(msg(d).find("reserved"), std::string::npos);
  Descriptor close{};
  close.op = static_cast<std::uint16_t>(Op::kClose);
  close.socket = 1;
  EXPECT_TRUE(validate_request(close, limits).ok());
  close.pool = 1;
  EXPECT_FALSE(validate_request(close, limits).ok());
}

TEST_F(DescriptorTest, BufferReturnUsesReceivePool) {
  Descriptor d{};
  d.op = static_cast<std::uint16_t>(Op::kBufferReturn);
  d.pool = static_cast<std::uint16_t>(PoolId::kRx);
  d.chunk = 7;
  EXPECT_TRUE(validate_request(d, limits).ok());
  d.chunk = 8;
  EXPECT_FALSE(validate_request(d, limits).ok());
}

}  // namespace
}  // namespace tosec::rpc
