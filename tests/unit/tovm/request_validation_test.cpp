// validate_guest_request on its own: each layer of checks, without a TOE running.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <vector>

#include "tosec/tovm/request_handler.h"

namespace tosec::tovm {
namespace {

struct Fixture {
  std::vector<std::byte> tx_mem = std::vector<std::byte>(8 * 64);
  std::vector<std::byte> rx_mem = std::vector<std::byte>(8 * 64);
  rpc::BufferPool tx = *rpc::BufferPool::attach(tx_mem, 8, 64, "pool.tx");
  rpc::BufferPool rx = *rpc::BufferPool::attach(rx_mem, 8, 64, "pool.rx");
  SocketTable sockets{4};
  rpc::ChunkLedger held{8};
  rpc::ChunkAllocator rx_alloc{8};
  ValidationContext ctx() {
    ValidationContext c;
    c.limits = {4, &tx, &rx};
    c.sockets = &sockets;
    c.rx = &rx_alloc;
    c.lane = {1, 4, 4, &held};  // lane 1 owns tx chunks 4..7
    return c;
  }
};

rpc::Descriptor send_desc(std::uint32_t socket, std::uint32_t chunk) {
  rpc::Descriptor d{};
  d.op = static_cast<std::uint16_t>(rpc::Op::kSend);
  d.socket = socket;
  d.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
  d.chunk = chunk;
  d.length = 10;
  return d;
}

TEST(RequestValidation, Layers) {
  Fixture f;
  ASSERT_TRUE(f.sockets.allocate());  // socket 0
  EXPECT_TRUE(validate_guest_request(send_desc(0, 5), f.ctx()).ok());
  EXPECT_EQ(validate_guest_request(send_desc(1, 5), f.ctx()).code(), EINVAL) << "not allocated";
  EXPECT_EQ(validate_guest_request(send_desc(9, 5), f.ctx()).code(), EINVAL) << "out of range";
  EXPECT_EQ(validate_guest_request(send_desc(0, 2), f.ctx()).code(), EINVAL) << "other lane";
  EXPECT_EQ(validate_guest_request(send_desc(0, 8), f.ctx()).code(), EINVAL) << "out of pool";
  ASSERT_TRUE(f.held.take(5).ok());
  const auto twice = validate_guest_request(send_desc(0, 5), f.ctx());
  EXPECT_EQ(twice.code(), EINVAL);
  EXPECT_NE(twice.message().find("twice"), std::string::npos) << twice.message();
  auto big = send_desc(0, 6);
  big.offset = 60;
  EXPECT_EQ(validate_guest_request(big, f.ctx()).code(), EINVAL) << "crosses the chunk end";

  rpc::Descriptor kick{};
  kick.op = rpc::kOpKick;
  kick.socket = 0;
  kick.arg0 = 1;
  EXPECT_TRUE(validate_guest_request(kick, f.ctx()).ok());
  kick.arg0 = 3;
  EXPECT_EQ(validate_guest_request(kick, f.ctx()).code(), EINVAL);

  rpc::Descriptor sock{};
  sock.op = static_cast<std::uint16_t>(rpc::Op::kSocket);
  sock.socket = 12345;  // ignored for kSocket
  sock.arg0 = AF_INET | SOCK_STREAM << 16;
  EXPECT_TRUE(validate_guest_request(sock, f.ctx()).ok());
  sock.arg0 = AF_UNIX | SOCK_STREAM << 16;
  EXPECT_EQ(validate_guest_request(sock, f.ctx()).code(), EAFNOSUPPORT);

  rpc::Descriptor ret{};
  ret.op = static_cast<std::uint16_t>(rpc::Op::kBufferReturn);
  ret.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
  ret.chunk = 4;
  EXPECT_EQ(validate_guest_request(ret, f.ctx()).code(), EINVAL) << "tx chunk returned as rx";
}

TEST(RequestValidation, InlineSetsockoptAndNoReply) {
  Fixture f;
  ASSERT_TRUE(f.sockets.allocate());  // socket 0
  rpc::Descriptor opt{};
  opt.op = static_cast<std::uint16_t>(rpc::Op::kSetsockopt);
  opt.socket = 0;
  opt.length = sizeof(int);  // pool kNone: the value is inline in arg1
  opt.arg1 = 1;
  EXPECT_TRUE(validate_guest_request(opt, f.ctx()).ok());
  opt.flags = rpc::kDescFlagNoReply;
  EXPECT_TRUE(validate_guest_request(opt, f.ctx()).ok());
  opt.length = 9;
  const auto long_inline = validate_guest_request(opt, f.ctx());
  EXPECT_EQ(long_inline.code(), EINVAL);
  EXPECT_NE(long_inline.message().find("inline option length"), std::string::npos)
      << long_inline.message();
  opt.length = sizeof(int);
  opt.chunk = 5;  // a chunk number without a pool names nothing
  EXPECT_EQ(validate_guest_request(opt, f.ctx()).code(), EINVAL);

  // No reply is only for inline options: anything else must be answered.
  auto send = send_desc(0, 5);
  send.flags = rpc::kDescFlagNoReply;
  const auto no_reply_send = validate_guest_request(send, f.ctx());
  EXPECT_EQ(no_reply_send.code(), EINVAL);
  EXPECT_NE(no_reply_send.message().find("no reply"), std::string::npos) << no_reply_send.message();
  rpc::Descriptor chunked = opt;
  chunked.chunk = 5;
  chunked.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
  EXPECT_EQ(validate_guest_request(chunked, f.ctx()).code(), EINVAL);
}

}  // namespace
}  // namespace tosec::tovm
