// Dead connections (docs/tovm.md, "Dead connections"): a reset or refused TCP connection shows
// POLLERR|POLLHUP on the guest's placeholder A, and the socket is still freed when the guest
// closes A although the TOE no longer holds B.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "fake_guest.h"
#include "toe_harness.h"
#include "toe_with_guest.h"

namespace tosec::tovm::test {
namespace {

using rpc::Op;

sockaddr_in loopback_any_port() {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

class TovmDeadConnection : public ToeWithGuest {
 protected:
  // A guest socket with the shim's sentinel byte in its placeholder (guest_channel.h).
  std::uint32_t guest_socket(rpc::UniqueFd& a) {
    const std::int64_t id = g_->socket(AF_INET, SOCK_STREAM, a);
    EXPECT_GE(id, 0);
    const char sentinel = rpc::kPlaceholderSentinel;
    EXPECT_EQ(::send(a.get(), &sentinel, 1, MSG_DONTWAIT), 1);
    return static_cast<std::uint32_t>(id);
  }
};

TEST_F(TovmDeadConnection, ResetShowsErrAndHupAndTheGuestCloseStillFreesTheSocket) {
  rpc::UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr = loopback_any_port();
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  rpc::UniqueFd a;
  const std::uint32_t id = guest_socket(a);
  const std::int64_t r = g_->addr_op(Op::kConnect, id, &addr, sizeof addr);
  ASSERT_TRUE(r == 0 || r == -EINPROGRESS) << r;
  ASSERT_TRUE(wait_for([&] { return g_->slot(id)->state.load() == rpc::SocketState::kConnected; }));
  rpc::UniqueFd peer(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(peer.valid());
  const linger lg{1, 0};
  ASSERT_EQ(::setsockopt(peer.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  peer.reset();  // RST
  pollfd p{a.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, kWaitMs), 1) << "A never became ready after the peer's reset";
  EXPECT_NE(p.revents & POLLERR, 0) << "revents=" << p.revents;
  EXPECT_NE(p.revents & POLLHUP, 0) << "revents=" << p.revents;
  EXPECT_NE(g_->slot(id)->events.load() & rpc::kEvReset, 0U);
  int so = 0;
  socklen_t so_len = sizeof so;
  ASSERT_EQ(::getsockopt(a.get(), SOL_SOCKET, SO_ERROR, &so, &so_len), 0);
  EXPECT_EQ(so, ECONNRESET) << "A's own error (SO_ERROR reads and clears it, as on TCP)";
  // The dead socket stays allocated while the guest holds A ...
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(toe_.stat("open"), 1);
  // ... and is freed once A's last reference is closed (sock_diag, not EOF on B).
  a.reset();
  EXPECT_TRUE(wait_for([&] { return toe_.stat("open") == 0; })) << "dead socket never freed";
}

TEST_F(TovmDeadConnection, RefusedConnectShowsErrAndHup) {
  sockaddr_in addr = loopback_any_port();
  socklen_t len = sizeof addr;
  {  // a port nobody listens on: bound, then closed
    rpc::UniqueFd tmp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::bind(tmp.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
    ASSERT_EQ(::getsockname(tmp.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  }
  rpc::UniqueFd a;
  const std::uint32_t id = guest_socket(a);
  const std::int64_t r = g_->addr_op(Op::kConnect, id, &addr, sizeof addr);
  ASSERT_TRUE(r == -EINPROGRESS || r == -ECONNREFUSED) << r;
  if (r == -ECONNREFUSED) GTEST_SKIP() << "refused synchronously: nothing to mirror";
  // A is writable from the start (this guest did not fill it, unlike a shim's blocking
  // connect), so a single poll can return before the TOE has seen the refusal (it did under
  // ASan): wait until A shows the error.
  pollfd p{a.get(), POLLOUT, 0};
  EXPECT_TRUE(wait_for([&] {
    p.revents = 0;
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0;
  })) << "revents="
      << p.revents;
  EXPECT_NE(p.revents & POLLERR, 0) << "revents=" << p.revents;
  EXPECT_NE(p.revents & POLLHUP, 0) << "revents=" << p.revents;
  EXPECT_EQ(g_->slot(id)->so_error.load(), ECONNREFUSED);
  a.reset();
  EXPECT_TRUE(wait_for([&] { return toe_.stat("open") == 0; }));
}

}  // namespace
}  // namespace tosec::tovm::test
