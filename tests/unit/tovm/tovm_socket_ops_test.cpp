// Socket operations beyond plain data: shutdown ordering, SO_LINGER 0, kKick re-signalling.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <memory>
#include <string>

#include "fake_guest.h"
#include "toe_harness.h"
#include "toe_with_guest.h"

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
class TovmSocketOps : public ToeWithGuest {
 protected:
  void SetUp() override {
    ToeWithGuest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(connect_pair(*g_, c_));
  }

  // After the base's members: the connection's fds close first, the TOE goes last.
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

int kernel_int_option(int fd, int level, int name) {
  int v = -1;
  socklen_t l = sizeof v;
  return ::getsockopt(fd, level, name, &v, &l) == 0 ? v : -errno;
}

TEST_F(TovmSocketOps, FreshSocketPublishesBufferSizesUntilItConnects) {
  // The shim answers getsockopt(SO_SNDBUF/SO_RCVBUF) of a kOpen socket from the slot: the
  // values must be what the kernel reports for a fresh socket of that kind.
  rpc::UniqueFd a;
  const std::int64_t id = g_->socket(AF_INET, SOCK_STREAM, a);
  ASSERT_GE(id, 0);
  const auto sid = static_cast<std::uint32_t>(id);
  rpc::UniqueFd k(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(g_->slot(sid)->sndbuf.load(), kernel_int_option(k.get(), SOL_SOCKET, SO_SNDBUF));
  EXPECT_EQ(g_->slot(sid)->rcvbuf.load(), kernel_int_option(k.get(), SOL_SOCKET, SO_RCVBUF));
  EXPECT_GT(g_->slot(sid)->sndbuf.load(), 0);
  // A set re-publishes what the kernel made of it (doubled).
  const int want = 65536;
  ASSERT_EQ(g_->setsockopt(sid, SOL_SOCKET, SO_SNDBUF, &want, sizeof want), 0);
  ASSERT_EQ(::setsockopt(k.get(), SOL_SOCKET, SO_SNDBUF, &want, sizeof want), 0);
  EXPECT_EQ(g_->slot(sid)->sndbuf.load(), kernel_int_option(k.get(), SOL_SOCKET, SO_SNDBUF));
  EXPECT_EQ(g_->getsockopt_int(sid, SOL_SOCKET, SO_SNDBUF), g_->slot(sid)->sndbuf.load());
  // Another kind of socket gets its own kind's defaults (the TOE caches them per kind).
  rpc::UniqueFd k6(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!k6.valid()) return;  // no IPv6 on this host
  rpc::UniqueFd a2;
  const std::int64_t id2 = g_->socket(AF_INET6, SOCK_DGRAM, a2);
  ASSERT_GE(id2, 0);
  EXPECT_EQ(g_->slot(static_cast<std::uint32_t>(id2))->rcvbuf.load(),
            kernel_int_option(k6.get(), SOL_SOCKET, SO_RCVBUF));
}

TEST_F(TovmSocketOps, PostedSetsockoptIsAppliedInOrderWithoutAReply) {
  ASSERT_EQ(g_->getsockopt_int(c_.id, IPPROTO_TCP, TCP_NODELAY), 0);
  g_->clear_backlog();
  ASSERT_EQ(g_->setsockopt_inline(c_.id, IPPROTO_TCP, TCP_NODELAY, 1, false), 0);
  // The next request of the lane is handled after it: the option is set by then.
  EXPECT_EQ(g_->getsockopt_int(c_.id, IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_EQ(g_->backlog_size(), 0U) << "a no-reply request was answered";
  // Inline with a reply behaves like the chunk form.
  EXPECT_EQ(g_->setsockopt_inline(c_.id, SOL_SOCKET, SO_KEEPALIVE, 1, true), 0);
  EXPECT_EQ(g_->getsockopt_int(c_.id, SOL_SOCKET, SO_KEEPALIVE), 1);
  // A posted option the kernel refuses is counted and logged, still without a reply.
  ASSERT_EQ(g_->setsockopt_inline(c_.id, 4242, 1, 1, false), 0);
  EXPECT_EQ(g_->getsockopt_int(c_.id, SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(toe_.stat("async_setsockopt_failures"), 1);
  EXPECT_EQ(g_->backlog_size(), 0U);
  EXPECT_EQ(toe_.stat("bad_descriptors"), 0);
}

TEST_F(TovmSocketOps, ConnectDrainsAOnlyWhenTheGuestPublishedTxBlocked) {
  // The guest fills A to wait for a connect only when it has to sleep, and publishes
  // tx_blocked after the fill. A connect that completes before that must not drain (no junk
  // to drain); the guest's kick after publishing gets A drained.
  sockaddr_in addr{};
  socklen_t l = sizeof addr;
  ASSERT_EQ(::getsockname(c_.listener.get(), reinterpret_cast<sockaddr*>(&addr), &l), 0);
  rpc::UniqueFd a;
  const std::int64_t id = g_->socket(AF_INET, SOCK_STREAM, a);
  ASSERT_GE(id, 0);
  const auto sid = static_cast<std::uint32_t>(id);
  const int small = 4096;
  ASSERT_EQ(::setsockopt(a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  static const char junk[2048] = {};
  ASSERT_EQ(::send(a.get(), junk, sizeof junk, MSG_DONTWAIT), static_cast<ssize_t>(sizeof junk));
  pollfd p{a.get(), POLLOUT, 0};
  ASSERT_EQ(::poll(&p, 1, 0), 0) << "the junk makes A unwritable";
  const std::int64_t r = g_->addr_op(rpc::Op::kConnect, sid, &addr, sizeof addr);
  ASSERT_TRUE(r == 0 || r == -EINPROGRESS) << r;
  ASSERT_TRUE(
      wait_for([&] { return g_->slot(sid)->state.load() == rpc::SocketState::kConnected; }));
  // A later request is handled after the connect completion finished (one worker thread).
  ASSERT_EQ(g_->getsockopt_int(sid, SOL_SOCKET, SO_ERROR), 0);
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "drained although the guest never published tx_blocked";
  g_->slot(sid)->tx_blocked.store(1, std::memory_order_seq_cst);
  g_->kick(sid, 2);
  EXPECT_EQ(::poll(&p, 1, kWaitMs), 1) << "the kick after tx_blocked drains A";
  EXPECT_EQ(g_->slot(sid)->tx_blocked.load(), 0U);
}

}  // namespace
}  // namespace tosec::tovm::test
