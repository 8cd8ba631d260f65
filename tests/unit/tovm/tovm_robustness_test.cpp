// The TOE against a hostile or dying guest: malformed descriptors get -EINVAL completions and a
// counter, a corrupted ring closes only that lane, and a killed guest process has its sockets
// closed and its buffers reclaimed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <filesystem>

#include "fake_guest.h"
#include "toe_harness.h"

namespace tosec::tovm::test {
namespace {

using rpc::Op;

std::size_t count_lanes(const std::string& json) {
  std::size_t n = 0;
  for (auto p = json.find("\"lane\":"); p != std::string::npos; p = json.find("\"lane\":", p + 1))
    ++n;
  return n;
}

rpc::Descriptor desc(Op op, std::uint32_t socket = 0) {
  rpc::Descriptor d{};
  d.op = static_cast<std::uint16_t>(op);
  d.socket = socket;
  return d;
}

// Guests and tests take the sidecar path's existence as "the TOE accepts joins": it must appear
// already listening (no ECONNREFUSED window), private to the owner, with no staging name left.
TEST(TovmSidecar, PathAppearsListeningPrivateAndAlone) {
  ToeHarness toe;
  ASSERT_TRUE(toe.ok()) << toe.error();
  const std::string path = toe.options().sidecar;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  rpc::UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
  EXPECT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0)
      << std::strerror(errno);
  for (const auto& e :
       std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    EXPECT_EQ(e.path().filename().string().find(".new."), std::string::npos) << e.path();
  }
}

TEST(TovmSidecar, TooLongPathIsRefusedByName) {
  const std::string long_path = "/tmp/" + std::string(100, 'x');
  ToeHarness toe(small_config(), [&](TovmOptions& o) { o.sidecar = long_path; });
  ASSERT_FALSE(toe.ok());
  EXPECT_NE(toe.error().find("--sidecar path too long"), std::string::npos) << toe.error();
  EXPECT_NE(toe.error().find(long_path), std::string::npos) << toe.error();
}

TEST(TovmRobustness, MalformedDescriptorsGetErrorsAndTheToeSurvives) {
  ToeHarness toe;
  ASSERT_TRUE(toe.ok()) << toe.error();
  std::string err;
  auto g1 = FakeGuest::join(toe.options().ivshmem, toe.options().sidecar, err);
  ASSERT_TRUE(g1) << err;
  auto g2 = FakeGuest::join(toe.options().ivshmem, toe.options().sidecar, err);
  ASSERT_TRUE(g2) << err;
  ASSERT_NE(g1->lane(), g2->lane());
  rpc::UniqueFd a;
  const std::int64_t id = g1->socket(AF_INET, SOCK_STREAM, a);
  ASSERT_GE(id, 0);
  const auto sid = static_cast<std::uint32_t>(id);

  auto result = [&](rpc::Descriptor d) {
    auto c = g1->call(d);
    return c ? c->result : std::int64_t{-ETIMEDOUT};
  };
  rpc::Descriptor bad_op{};
  bad_op.op = 200;
  EXPECT_EQ(result(bad_op), -EINVAL) << "unknown op";
  EXPECT_EQ(result(desc(Op::kListen, 1000)), -EINVAL) << "socket id out of range";
  EXPECT_EQ(result(desc(Op::kListen, sid + 1)), -EINVAL) << "socket id not allocated";
  rpc::Descriptor reserved = desc(Op::kListen, sid);
  reserved.reserved1 = 7;
  EXPECT_EQ(result(reserved), -EINVAL) << "reserved field set";

  rpc::Descriptor foreign = desc(Op::kSend, sid);
  foreign.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
  foreign.chunk = g2->channel().lane_tx_first(g2->lane());  // lane 2's chunk
  foreign.length = 16;
  EXPECT_EQ(result(foreign), -EINVAL) << "someone else's chunk";

  // The same chunk twice in one burst: the second is a double hand-over.
  const std::uint32_t mine = g1->channel().lane_tx_first(g1->lane()) + 3;
  rpc::Descriptor twice[2] = {desc(Op::kSend, sid), desc(Op::kSend, sid)};
  for (std::uint64_t i = 0; i < 2; ++i) {
    twice[i].pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
    twice[i].chunk = mine;
    twice[i].length = 8;
    twice[i].request_id = 5000 + i;
  }
  ASSERT_TRUE(g1->post_many(twice, 2));
  auto c0 = g1->wait_cpl(5000);
  auto c1 = g1->wait_cpl(5001);
  ASSERT_TRUE(c0 && c1);
  EXPECT_EQ(c0->result, -ENOTCONN) << "first use is fine (the socket is just not connected)";
  EXPECT_EQ(c1->result, -EINVAL) << "second use of a held chunk";

  // An rx chunk the TOE never lent: no completion, nothing freed, but counted (as a return
  // that ends no loan: the TOE cannot tell it from a late one).
  g1->return_rx(0, 5);
  EXPECT_TRUE(wait_for([&] { return toe.stat("stale_buffer_returns") == 1; })) << toe.status();
  const std::int64_t bad_before_corrupt = 6;
  EXPECT_EQ(toe.stat("bad_descriptors"), bad_before_corrupt) << toe.status();

  // Guest 2 corrupts its request ring's producer index: its lane is closed, nothing else.
  auto lanes = g2->view().find("lanes", rpc::AreaKind::kRaw);
  ASSERT_TRUE(lanes);
  auto* ring = reinterpret_cast<rpc::RingShared*>(
      g2->view().area_bytes(*lanes).data() +
      std::size_t{g2->lane()} * rpc::lane_stride(g2->channel().config().ring_slots));
  ring->head.store(ring->tail.load() + 100000, std::memory_order_release);
  g2->ring_toe();
  EXPECT_TRUE(wait_for([&] { return count_lanes(toe.status()) == 1; })) << toe.status();
  EXPECT_GT(toe.stat("bad_descriptors"), bad_before_corrupt);

  // Guest 1 keeps working.
  EXPECT_EQ(result(desc(Op::kGetname, sid)), 0);
  rpc::UniqueFd a2;
  EXPECT_GE(g1->socket(AF_INET, SOCK_STREAM, a2), 0);
  EXPECT_EQ(toe.stat("open"), 2);
}

TEST(TovmRobustness, KilledGuestProcessHasItsSocketsClosedAndBuffersReclaimed) {
  ToeHarness toe;
  ASSERT_TRUE(toe.ok()) << toe.error();
  rpc::UniqueFd lfd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in la{};
  la.sin_family = AF_INET;
  la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd.get(), reinterpret_cast<sockaddr*>(&la), sizeof la), 0);
  ASSERT_EQ(::listen(lfd.get(), 4), 0);
  socklen_t ll = sizeof la;
  ::getsockname(lfd.get(), reinterpret_cast<sockaddr*>(&la), &ll);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The fake guest process: connect, send, never return rx chunks, then hang.
    std::string e;
    auto g = FakeGuest::join(toe.options().ivshmem, toe.options().sidecar, e);
    if (!g) ::_exit(2);
    rpc::UniqueFd a;
    const std::int64_t id = g->socket(AF_INET, SOCK_STREAM, a);
    if (id < 0) ::_exit(3);
    const auto sid = static_cast<std::uint32_t>(id);
    if (g->addr_op(Op::kConnect, sid, &la, sizeof la) != -EINPROGRESS &&
        g->slot(sid)->state.load() != rpc::SocketState::kConnected) {
      ::_exit(4);
    }
    if (!wait_for([&] { return g->slot(sid)->state.load() == rpc::SocketState::kConnected; }))
      ::_exit(5);
    const char msg[] = "from the guest";
    if (!g->send_async(sid, std::as_bytes(std::span(msg, sizeof msg)))) ::_exit(6);
    (void)::write(ready[1], "r", 1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  tosec::test::ChildProcess guard;  // not used for spawn; the child is reaped below
  pollfd p{ready[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, kWaitMs), 1);
  char r;
  ASSERT_EQ(::read(ready[0], &r, 1), 1);
  ::close(ready[0]);

  pollfd lp{lfd.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&lp, 1, kWaitMs), 1);
  rpc::UniqueFd peer(::accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(peer.valid());
  char buf[64] = {};
  pollfd pp{peer.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&pp, 1, kWaitMs), 1);
  EXPECT_GT(::recv(peer.get(), buf, sizeof buf, 0), 0);
  // Data towards the guest, which it never returns: rx chunks are lent.
  std::vector<char> data(20000, 'x');
  ASSERT_EQ(::send(peer.get(), data.data(), data.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(data.size()));
  ASSERT_TRUE(wait_for([&] {
    const auto st = toe.status();
    return ToeHarness::stat_in(st, "open") == 1 && ToeHarness::stat_in(st, "rx_chunks_lent") > 0;
  })) << toe.status();
  EXPECT_EQ(count_lanes(toe.status()), 1U);

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);

  EXPECT_TRUE(wait_for([&] {
    const auto st = toe.status();
    return ToeHarness::stat_in(st, "open") == 0 && ToeHarness::stat_in(st, "rx_chunks_lent") == 0 &&
           ToeHarness::stat_in(st, "tx_chunks_held") == 0 &&
           ToeHarness::stat_in(st, "guests_reclaimed") == 1 && count_lanes(st) == 0;
  })) << toe.status();
  // The kernel connection was closed too: the peer sees EOF (or a reset).
  ASSERT_EQ(::poll(&pp, 1, kWaitMs), 1);
  EXPECT_LE(::recv(peer.get(), buf, sizeof buf, 0), 0);
}

// A process that dies holding a socket's rx_lock (inside a receive): the TOE frees the lock as
// it reclaims the lane, so the processes that share the socket go on; a lock that names a live
// lane stays as it is.
TEST(TovmRobustness, AReclaimedLaneFreesTheRxLocksItHeld) {
  ToeHarness toe;
  ASSERT_TRUE(toe.ok()) << toe.error();
  std::string err;
  auto survivor = FakeGuest::join(toe.options().ivshmem, toe.options().sidecar, err);
  ASSERT_TRUE(survivor) << err;
  auto dying = FakeGuest::join(toe.options().ivshmem, toe.options().sidecar, err);
  ASSERT_TRUE(dying) << err;
  rpc::UniqueFd a1, a2;  // kept open here: the sockets outlive the dying process
  const std::int64_t s1 = dying->socket(AF_INET, SOCK_STREAM, a1);
  const std::int64_t s2 = survivor->socket(AF_INET, SOCK_STREAM, a2);
  ASSERT_GE(s1, 0);
  ASSERT_GE(s2, 0);
  rpc::SocketSlot* held = survivor->slot(static_cast<std::uint32_t>(s1));
  rpc::SocketSlot* live = survivor->slot(static_cast<std::uint32_t>(s2));
  const std::uint32_t generation = held->generation.load();
  held->rx_lock.store(rpc::rx_lock_owner(dying->lane()) | rpc::kRxLockWaiters);
  held->rx_signalled.store(rpc::kRxClaimed);  // it was spinning for data when it died
  live->rx_lock.store(rpc::rx_lock_owner(survivor->lane()));
  dying.reset();  // its sidecar closes: the process is gone
  ASSERT_TRUE(wait_for([&] { return toe.stat("guests_reclaimed") == 1; })) << toe.status();
  EXPECT_EQ(held->rx_lock.load(), 0U);
  EXPECT_EQ(live->rx_lock.load(), rpc::rx_lock_owner(survivor->lane()));
  EXPECT_EQ(toe.stat("rx_locks_released"), 1);
  EXPECT_EQ(held->rx_signalled.load(), 0U) << "the dead reader's claim would mute readiness";
  // Freed, not recycled: the socket is still the one the survivor shares.
  EXPECT_EQ(held->generation.load(), generation);
  EXPECT_EQ(held->state.load(), rpc::SocketState::kOpen);
  live->rx_lock.store(0);
}

}  // namespace
}  // namespace tosec::tovm::test
