// AgentCore against a fake TOE: the test formats a guest region, plays the TOE's end of the
// agent lane (consumes requests, produces completions) and checks what the agent does with
// real socketpairs as placeholders.
#include "tosec/agent/agent_core.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <vector>

#include "formatted_guest_region.h"

namespace tosec::agent {
namespace {

using rpc::AgentOp;
using rpc::Descriptor;

class FakeRinger final : public rpc::DoorbellRinger {
 public:
  rpc::Status ring(rpc::PeerId peer, rpc::Vector vector) override {
    rings.emplace_back(peer, vector);
    return {};
  }
  std::vector<std::pair<rpc::PeerId, rpc::Vector>> rings;
};

constexpr rpc::PeerId kSelf = 4;
constexpr rpc::PeerId kToe = 1;
constexpr std::uint64_t kGen = 0x1234;
constexpr unsigned kVectors = 4;

class AgentCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_.lanes = 4;  // lane 3 is the agent's
    cfg_.ring_slots = 16;
    cfg_.max_sockets = 16;
    cfg_.socket_rx_entries = 4;
    cfg_.chunk_size = 256;
    cfg_.tx_chunks_per_lane = 2;
    cfg_.rx_chunks = 8;
    ASSERT_EQ(region_.format(cfg_), "");
    auto req = toe_.lane_ring(3, true, rpc::RingEnd::kConsumer);
    auto cpl = toe_.lane_ring(3, false, rpc::RingEnd::kProducer);
    ASSERT_TRUE(req && cpl);
    toe_req_ = rpc::TypedRing<Descriptor>(std::move(*req));
    toe_cpl_ = rpc::TypedRing<Descriptor>(std::move(*cpl));
    // The TOE sleeps on this lane: the agent must ring after every request.
    toe_req_.raw().consumer_sleeping().store(1);
    AgentCore::Hooks hooks;
    hooks.process_reply = [this](std::uint64_t t, std::int64_t r) { replies_.emplace_back(t, r); };
    hooks.watch_b = [this](int fd, std::uint32_t socket, std::uint32_t tag) {
      watched_.push_back({fd, socket, tag});
    };
    auto core = AgentCore::attach(guest_, ringer_, kSelf, kGen, kVectors, std::move(hooks));
    ASSERT_TRUE(core) << core.error().message;
    core_.emplace(std::move(*core));
  }
  void TearDown() override { core_.reset(); }

  std::optional<Descriptor> next_request() {
    Descriptor d{};
    if (!toe_req_.dequeue(d)) return std::nullopt;
    return d;
  }
  void reply(AgentOp op, std::uint32_t socket, std::uint64_t request_id, std::int64_t result,
             std::uint64_t arg0, std::uint64_t arg1) {
    Descriptor d{};
    d.op = rpc::agent_op(op);
    d.socket = socket;
    d.request_id = request_id;
    d.result = result;
    d.arg0 = arg0;
    d.arg1 = arg1;
    ASSERT_TRUE(toe_cpl_.enqueue(d));
  }
  // Hello answered: the TOE is peer kToe, vector 2.
  void handshake() {
    const rpc::PeerId candidates[] = {kToe, 7};
    ASSERT_TRUE(core_->send_hello(candidates));
    auto h = next_request();
    ASSERT_TRUE(h);
    reply(AgentOp::kAgentHello, 0, 0, 0, kToe | (2U << 16), kGen);
    ASSERT_TRUE(core_->poll());
    ASSERT_TRUE(core_->ready());
  }
  // A process on lane 1 (the TOE's answer to kAgentProcess).
  void process_on_lane1() {
    ASSERT_TRUE(core_->send_process(77, 1000, 1));
    ASSERT_TRUE(next_request());
    reply(AgentOp::kAgentProcess, 0, 77, 1, 0, 0);
    ASSERT_TRUE(core_->poll());
  }
  // A placeholder pair; the guest's creation sentinel is already in A (as the shim does).
  void pair(int& a, int& b) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a = sv[0];
    b = sv[1];
    ASSERT_EQ(::send(a, &rpc::kPlaceholderSentinel, 1, 0), 1);
  }
  // A placeholder whose B the process on lane 1 sent for request `rid`, bound by the TOE as
  // (socket, generation). Returns A.
  int bound(std::uint64_t rid, std::uint32_t socket, std::uint64_t generation) {
    int a = -1, b = -1;
    pair(a, b);
    core_->add_b(1, rid, rpc::UniqueFd(b));
    reply(AgentOp::kAgentBind, socket, rid, 0, 1, generation);
    EXPECT_TRUE(core_->poll());
    return a;
  }
  static bool readable(int a) {
    char c;
    return ::recv(a, &c, 1, MSG_DONTWAIT | MSG_PEEK) == 1;
  }

  struct Watched {
    int fd;
    std::uint32_t socket, tag;
  };
  rpc::GuestChannelConfig cfg_;
  test::FormattedGuestRegion region_;
  rpc::GuestChannel& toe_ = region_.toe();
  rpc::GuestChannel& guest_ = region_.guest();
  rpc::TypedRing<Descriptor> toe_req_, toe_cpl_;
  FakeRinger ringer_;
  std::optional<AgentCore> core_;
  std::vector<std::pair<std::uint64_t, std::int64_t>> replies_;
  std::vector<Watched> watched_;
};

TEST_F(AgentCoreTest, HelloRingsEveryCandidateAndLearnsTheToe) {
  const rpc::PeerId candidates[] = {kToe, 7};
  ASSERT_TRUE(core_->send_hello(candidates));
  auto h = next_request();
  ASSERT_TRUE(h);
  EXPECT_EQ(h->op, rpc::agent_op(AgentOp::kAgentHello));
  EXPECT_EQ(h->arg0, kSelf);
  EXPECT_EQ(h->arg1, kGen);
  EXPECT_EQ(ringer_.rings.size(), 2U);
  // A reply for another generation is an earlier agent's: ignored.
  reply(AgentOp::kAgentHello, 0, 0, 0, kToe, kGen + 1);
  ASSERT_TRUE(core_->poll());
  EXPECT_FALSE(core_->ready());
  reply(AgentOp::kAgentHello, 0, 0, 0, kToe | (2U << 16), kGen);
  ASSERT_TRUE(core_->poll());
  ASSERT_TRUE(core_->ready());
  EXPECT_EQ(core_->toe_peer(), kToe);
  EXPECT_EQ(core_->toe_vector(), 2);
  // From now on requests ring (toe_peer, toe_vector) under the sleeping flag.
  ringer_.rings.clear();
  ASSERT_TRUE(core_->send_process(1, 2, 3));
  ASSERT_EQ(ringer_.rings.size(), 1U);
  EXPECT_EQ(ringer_.rings[0], std::make_pair(kToe, rpc::Vector{2}));
  toe_req_.raw().consumer_sleeping().store(0);
  ASSERT_TRUE(core_->send_gone(0));
  EXPECT_EQ(ringer_.rings.size(), 1U);  // the TOE is awake: no doorbell
}

TEST_F(AgentCoreTest, HelloRefusedOrNamingABadVectorIsFatal) {
  const rpc::PeerId candidates[] = {kToe};
  ASSERT_TRUE(core_->send_hello(candidates));
  reply(AgentOp::kAgentHello, 0, 0, 0, kToe | (kVectors << 16), kGen);
  auto s = core_->poll();
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("vector"), std::string::npos);
}

TEST_F(AgentCoreTest, ProcessRelayAndLaneRange) {
  handshake();
  ASSERT_TRUE(core_->send_process(77, 1000, 3));
  auto p = next_request();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->op, rpc::agent_op(AgentOp::kAgentProcess));
  EXPECT_EQ(p->request_id, 77U);
  EXPECT_EQ(p->arg0, 1000U);
  EXPECT_EQ(p->arg1, 3U);
  reply(AgentOp::kAgentProcess, 0, 77, 1, 0, 0);
  reply(AgentOp::kAgentProcess, 0, 78, -EBUSY, 0, 0);
  reply(AgentOp::kAgentProcess, 0, 79, 3, 0, 0);  // the agent's own lane: a TOE bug
  ASSERT_TRUE(core_->poll());
  ASSERT_EQ(replies_.size(), 3U);
  EXPECT_EQ(replies_[0], std::make_pair(std::uint64_t{77}, std::int64_t{1}));
  EXPECT_EQ(replies_[1].second, -EBUSY);
  EXPECT_EQ(replies_[2].second, -EPROTO);
}

TEST_F(AgentCoreTest, BindThenSignalDrainShutWrMirrorOntoA) {
  handshake();
  process_on_lane1();
  const int a = bound(42, 5, 9);
  ASSERT_EQ(watched_.size(), 1U);
  EXPECT_EQ(watched_[0].socket, 5U);
  EXPECT_FALSE(readable(a));
  reply(AgentOp::kAgentSignal, 5, 0, 0, 0, 8);  // stale generation: ignored
  ASSERT_TRUE(core_->poll());
  EXPECT_FALSE(readable(a));
  reply(AgentOp::kAgentSignal, 5, 0, 0, 0, 9);
  ASSERT_TRUE(core_->poll());
  EXPECT_TRUE(readable(a));
  char c;
  ASSERT_EQ(::recv(a, &c, 1, 0), 1);
  reply(AgentOp::kAgentShutWr, 5, 0, 0, 0, 9);
  ASSERT_TRUE(core_->poll());
  EXPECT_EQ(::recv(a, &c, 1, MSG_DONTWAIT), 0);  // EOF on A: the peer's FIN
  ::close(a);
}

TEST_F(AgentCoreTest, BindBeforeBReplaysOperationsWhenBArrives) {
  handshake();
  process_on_lane1();
  reply(AgentOp::kAgentBind, 6, 43, 0, 1, 11);
  reply(AgentOp::kAgentSignal, 6, 0, 0, 0, 11);
  ASSERT_TRUE(core_->poll());
  EXPECT_TRUE(watched_.empty());
  int a, b;
  pair(a, b);
  core_->add_b(1, 43, rpc::UniqueFd(b));
  EXPECT_EQ(watched_.size(), 1U);
  EXPECT_TRUE(readable(a));
  ::close(a);
}

TEST_F(AgentCoreTest, EofOnBSendsHangupAndReleaseSendsNothing) {
  handshake();
  process_on_lane1();
  const int a = bound(42, 5, 9);
  ::close(a);
  ASSERT_EQ(watched_.size(), 1U);
  core_->on_b_hangup(5, watched_[0].tag + 1);  // a stale event: nothing
  EXPECT_FALSE(next_request());
  core_->on_b_hangup(5, watched_[0].tag);
  auto h = next_request();
  ASSERT_TRUE(h);
  EXPECT_EQ(h->op, rpc::agent_op(AgentOp::kAgentHangup));
  EXPECT_EQ(h->socket, 5U);
  EXPECT_EQ(h->arg1, 9U);
  EXPECT_EQ(core_->bound_sockets(), 0U);

  const int a2 = bound(44, 7, 3);
  reply(AgentOp::kAgentRelease, 7, 0, 0, 0, 3);
  ASSERT_TRUE(core_->poll());
  EXPECT_EQ(core_->bound_sockets(), 0U);
  EXPECT_FALSE(next_request());
  ::close(a2);
}

TEST_F(AgentCoreTest, KillResetsAAndHangsUpOnlyWhenTheLastAIsGone) {
  handshake();
  process_on_lane1();
  const int a = bound(42, 5, 9);
  reply(AgentOp::kAgentKill, 5, 0, 0, 0, 9);
  ASSERT_TRUE(core_->poll());
  char c;
  EXPECT_EQ(::recv(a, &c, 1, MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, ECONNRESET);  // B closed over the unread sentinel
  ASSERT_TRUE(core_->has_killed());
  core_->check_killed();
  EXPECT_FALSE(next_request()) << "A is still open";
  ::close(a);
  core_->check_killed();
  auto h = next_request();
  ASSERT_TRUE(h);
  EXPECT_EQ(h->op, rpc::agent_op(AgentOp::kAgentHangup));
  EXPECT_EQ(h->socket, 5U);
  EXPECT_FALSE(core_->has_killed());
}

TEST_F(AgentCoreTest, GoneHangsUpBindsStillWaitingForB) {
  handshake();
  process_on_lane1();
  reply(AgentOp::kAgentBind, 6, 43, 0, 1, 11);
  ASSERT_TRUE(core_->poll());
  ASSERT_TRUE(core_->send_gone(1));
  auto h = next_request();
  ASSERT_TRUE(h);
  EXPECT_EQ(h->op, rpc::agent_op(AgentOp::kAgentHangup));
  EXPECT_EQ(h->socket, 6U);
  auto g = next_request();
  ASSERT_TRUE(g);
  EXPECT_EQ(g->op, rpc::agent_op(AgentOp::kAgentGone));
  EXPECT_EQ(g->arg0, 1U);
  // A bind for the gone lane: its B can never come, so it is hung up at once.
  reply(AgentOp::kAgentBind, 8, 50, 0, 1, 2);
  ASSERT_TRUE(core_->poll());
  auto h2 = next_request();
  ASSERT_TRUE(h2);
  EXPECT_EQ(h2->op, rpc::agent_op(AgentOp::kAgentHangup));
  EXPECT_EQ(h2->socket, 8U);
}

TEST_F(AgentCoreTest, OutOfRangeMessagesAreDropped) {
  handshake();
  process_on_lane1();
  reply(AgentOp::kAgentBind, 16, 1, 0, 1, 1);  // socket == max_sockets
  reply(AgentOp::kAgentBind, 1, 1, 0, 3, 1);   // the agent lane
  reply(AgentOp::kAgentSignal, 0xffffffff, 0, 0, 0, 1);
  reply(static_cast<AgentOp>(1), 0, 0, 0, 0, 0);  // a lane op, not an agent op
  ASSERT_TRUE(core_->poll());
  EXPECT_EQ(core_->bound_sockets(), 0U);
  EXPECT_FALSE(next_request());
}

}  // namespace
}  // namespace tosec::agent
