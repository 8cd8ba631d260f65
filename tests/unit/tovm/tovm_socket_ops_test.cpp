// Socket operations beyond plain data: shutdown ordering, SO_LINGER 0, kKick re-signalling.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>

#include <memory>
#include <string>

#include "fake_guest.h"
#include "toe_harness.h"

namespace tosec::tovm::test {
namespace {

using rpc::Op;

struct Connected {
  rpc::UniqueFd listener, peer, a;
  std::uint32_t id = 0;
};

// A guest socket connected to a kernel peer through the TOE.
bool connect_pair(FakeGuest& g, Connected& c) {
  c.listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  if (::bind(c.listener.get(), reinterpret_cast<sockaddr*>(&a), l) != 0 ||
      ::listen(c.listener.get(), 4) != 0 ||
      ::getsockname(c.listener.get(), reinterpret_cast<sockaddr*>(&a), &l) != 0) {
    return false;
  }
  const std::int64_t id = g.socket(AF_INET, SOCK_STREAM, c.a);
  if (id < 0) return false;
  c.id = static_cast<std::uint32_t>(id);
  const std::int64_t r = g.addr_op(Op::kConnect, c.id, &a, sizeof a);
  if (r != 0 && r != -EINPROGRESS) return false;
  if (!wait_for([&] { return g.slot(c.id)->state.load() == rpc::SocketState::kConnected; })) {
    return false;
  }
  pollfd p{c.listener.get(), POLLIN, 0};
  if (::poll(&p, 1, kWaitMs) != 1) return false;
  c.peer.reset(::accept4(c.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  return c.peer.valid();
}

// Every test here starts from a TOE, one fake guest joined to it, and a guest socket connected
// through the TOE to a kernel peer.
class TovmSocketOps : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(toe_.ok()) << toe_.error();
    std::string err;
    g_ = FakeGuest::join(toe_.options().ivshmem, toe_.options().sidecar, err);
    ASSERT_TRUE(g_) << err;
    ASSERT_TRUE(connect_pair(*g_, c_));
  }

  // Declared in start-up order: the connection's fds close first, the TOE goes last.
  ToeHarness toe_;
  std::unique_ptr<FakeGuest> g_;
  Connected c_;
};

TEST_F(TovmSocketOps, ShutdownWriteSendsFinAfterQueuedBytes) {
  std::vector<std::byte> block(4096, std::byte{0x5A});
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(g_->send_async(c_.id, block));
  EXPECT_EQ(g_->simple(Op::kShutdown, c_.id, SHUT_WR), 0);
  EXPECT_NE(g_->slot(c_.id)->events.load() & rpc::kEvWriteShut, 0U);
  std::size_t total = 0;
  char buf[8192];
  for (;;) {
    pollfd p{c_.peer.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, kWaitMs), 1);
    const ssize_t n = ::recv(c_.peer.get(), buf, sizeof buf, 0);
    ASSERT_GE(n, 0);
    if (n == 0) break;  // FIN, after every queued byte
    total += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(total, 12U * 4096U);
}

TEST_F(TovmSocketOps, LingerZeroResetsThePeerOnClose) {
  const linger lg{1, 0};
  ASSERT_EQ(g_->setsockopt(c_.id, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  c_.a.reset();  // last reference: the TOE closes with RST
  pollfd p{c_.peer.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, kWaitMs), 1);
  char b;
  EXPECT_EQ(::recv(c_.peer.get(), &b, 1, 0), -1);
  EXPECT_EQ(errno, ECONNRESET);
  EXPECT_TRUE(wait_for([&] { return toe_.stat("open") == 0; }));
}

TEST_F(TovmSocketOps, KickReSignalsReadabilityAndPeerResetIsPublished) {
  ASSERT_EQ(::send(c_.peer.get(), "abc", 3, 0), 3);
  pollfd p{c_.a.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, kWaitMs), 1);
  // The guest clears readiness the wrong way round (data still queued): it loses the race and
  // asks the TOE to signal again.
  char junk[16];
  ASSERT_GT(::recv(c_.a.get(), junk, sizeof junk, 0), 0);
  g_->slot(c_.id)->rx_signalled.store(0);
  ASSERT_EQ(::poll(&p, 1, 0), 0);
  g_->kick(c_.id, 1);
  ASSERT_EQ(::poll(&p, 1, kWaitMs), 1) << "kKick re-signalled A";
  // A reset from the peer: so_error, kEvReset.
  const linger lg{1, 0};
  ::setsockopt(c_.peer.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  c_.peer.reset();
  EXPECT_TRUE(wait_for([&] { return (g_->slot(c_.id)->events.load() & rpc::kEvReset) != 0; }));
  EXPECT_EQ(g_->slot(c_.id)->so_error.load(), ECONNRESET);
  EXPECT_GE(g_->slot(c_.id)->error_seq.load(), 1U);
}

}  // namespace
}  // namespace tosec::tovm::test
