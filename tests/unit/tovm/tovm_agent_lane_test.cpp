// VM mode (decision 0008, rpc/agent_lane.h): the test plays the in-guest agent against a real
// TOE on a real region. It says hello on the agent lane, opens a process lane, acts as a shim
// on it (no sidecar, no fds) and checks the TOE -> agent descriptors that mirror readiness.
#include <gtest/gtest.h>
#include <poll.h>

#include <cstring>
#include <deque>
#include <optional>

#include "fake_guest.h"
#include "kernel_peer.h"
#include "toe_harness.h"
#include "tosec/rpc/agent_lane.h"
#include "tosec/tovm/options.h"
#include "tosec/tovm/placeholders.h"

namespace tosec::tovm::test {
namespace {

constexpr unsigned kVectors = 4;  // small_config().lanes: the agent's 0, one per process lane

ToeHarness vm_toe() {
  return ToeHarness(
      small_config(), [](TovmOptions& o) { o.vm_agent = true; }, kVectors);
}

// One side of a lane pair, the guest's: produce requests, consume completions.
struct GuestLane {
  rpc::SpscRing req, cpl;
  std::deque<rpc::Descriptor> backlog;
  bool attach(const rpc::GuestChannel& ch, std::uint32_t lane) {
    auto r = ch.lane_ring(lane, true, rpc::RingEnd::kProducer);
    auto c = ch.lane_ring(lane, false, rpc::RingEnd::kConsumer);
    if (!r || !c) return false;
    req = std::move(*r);
    cpl = std::move(*c);
    return true;
  }
  // The first completion `match` accepts, taken out of the backlog.
  template <class F>
  std::optional<rpc::Descriptor> take(F match) {
    std::optional<rpc::Descriptor> out;
    wait_for([&] {
      rpc::Descriptor d[16];
      for (std::uint32_t n; (n = cpl.dequeue_burst(d, 16)) > 0;)
        backlog.insert(backlog.end(), d, d + n);
      for (auto it = backlog.begin(); it != backlog.end(); ++it) {
        if (match(*it)) {
          out = *it;
          backlog.erase(it);
          return true;
        }
      }
      return false;
    });
    return out;
  }
};

// The test's agent: the VM's one ivshmem peer.
class TestAgent {
 public:
  explicit TestAgent(const ToeHarness& h) : ivs_(rpc::IvshmemClientOptions{kVectors, kWaitMs}) {
    if (!ivs_.connect(h.options().ivshmem)) return;
    auto view = rpc::RegionView::attach(ivs_.region().bytes());
    if (!view) return;
    view_ = std::move(*view);
    auto ch = rpc::GuestChannel::attach_guest(view_);
    if (!ch) return;
    ch_ = std::move(*ch);
    for (const auto& p : view_.peers()) {
      if (p.role == rpc::PeerRole::kTovm) toe_peer_ = p.ivshmem_id;
    }
    ok_ = agent_.attach(ch_, rpc::agent_lane(ch_.config()));
  }
  bool ok() const { return ok_; }
  rpc::PeerId peer() const { return ivs_.self_id(); }
  rpc::PeerId toe_peer() const { return toe_peer_; }
  const rpc::GuestChannel& channel() const { return ch_; }
  rpc::IvshmemClient& ivshmem() { return ivs_; }
  GuestLane& agent_lane() { return agent_; }

  void post(GuestLane& lane, const rpc::Descriptor& d) {
    ASSERT_EQ(lane.req.enqueue_burst(&d, 1), 1U);
    (void)rpc::notify(lane.req.consumer_sleeping(), ivs_.doorbells(), toe_peer_, 0);
  }
  void post_agent(rpc::AgentOp op, std::uint64_t request_id, std::uint64_t arg0, std::uint64_t arg1,
                  std::uint32_t socket = 0) {
    rpc::Descriptor d{};
    d.op = rpc::agent_op(op);
    d.request_id = request_id;
    d.socket = socket;
    d.arg0 = arg0;
    d.arg1 = arg1;
    post(agent_, d);
  }
  // The TOE's next message of `op` (for `socket`, if given) on the agent lane.
  std::optional<rpc::Descriptor> expect(rpc::AgentOp op, std::optional<std::uint32_t> socket = {}) {
    return agent_.take([&](const rpc::Descriptor& d) {
      return d.op == rpc::agent_op(op) && (!socket || d.socket == *socket);
    });
  }
  std::optional<rpc::Descriptor> hello(std::uint64_t generation) {
    post_agent(rpc::AgentOp::kAgentHello, 100 + generation, peer(), generation);
    return agent_.take([&](const rpc::Descriptor& d) { return d.request_id == 100 + generation; });
  }
  std::int64_t process(std::uint64_t token, std::uint16_t vector) {
    post_agent(rpc::AgentOp::kAgentProcess, token, static_cast<std::uint64_t>(::getpid()), vector);
    auto r = agent_.take([&](const rpc::Descriptor& d) {
      return d.op == rpc::agent_op(rpc::AgentOp::kAgentProcess) && d.request_id == token;
    });
    return r ? r->result : -ETIMEDOUT;
  }

 private:
  rpc::IvshmemClient ivs_;
  rpc::RegionView view_;
  rpc::GuestChannel ch_;
  rpc::PeerId toe_peer_ = 0;
  GuestLane agent_;
  bool ok_ = false;
};

// A shim's call on `lane`: the completion for `d`'s request id.
std::optional<rpc::Descriptor> call(TestAgent& a, GuestLane& lane, rpc::Descriptor d) {
  a.post(lane, d);
  return lane.take([&](const rpc::Descriptor& c) { return c.request_id == d.request_id; });
}

rpc::Descriptor with_address(const rpc::GuestChannel& ch, std::uint32_t chunk, rpc::Op op,
                             std::uint32_t socket, const void* bytes, std::size_t len) {
  std::memcpy(ch.tx_pool().chunk(chunk).data(), bytes, len);
  rpc::Descriptor d{};
  d.op = static_cast<std::uint16_t>(op);
  d.socket = socket;
  d.pool = static_cast<std::uint16_t>(rpc::PoolId::kTx);
  d.chunk = chunk;
  d.length = static_cast<std::uint32_t>(len);
  return d;
}

// Hello (generation 1), one process with `vector`, a TCP socket on its lane: the socket id or
// -errno; `lane` and `shim` are that process's.
std::int64_t agent_socket(TestAgent& agent, std::uint16_t vector, std::int64_t& lane,
                          GuestLane& shim) {
  if (!agent.hello(1)) return -ETIMEDOUT;
  lane = agent.process(1, vector);
  if (lane < 0) return lane;
  if (!shim.attach(agent.channel(), static_cast<std::uint32_t>(lane))) return -EIO;
  rpc::Descriptor sock{};
  sock.op = static_cast<std::uint16_t>(rpc::Op::kSocket);
  sock.request_id = 1;
  sock.arg0 = AF_INET | std::uint64_t{SOCK_STREAM} << 16;
  auto created = call(agent, shim, sock);
  return created ? created->result : -ETIMEDOUT;
}

bool rung(int eventfd) {
  pollfd p{eventfd, POLLIN, 0};
  if (::poll(&p, 1, kWaitMs) != 1) return false;
  std::uint64_t v;
  return ::read(eventfd, &v, sizeof v) == sizeof v;
}

TEST(TovmAgentLane, HelloProcessAndAShimWhoseBEndsTheAgentHolds) {
  ToeHarness h = vm_toe();
  ASSERT_TRUE(h.ok()) << h.error();
  TestAgent agent(h);
  ASSERT_TRUE(agent.ok());

  // Hello: the TOE names its doorbell and echoes the generation, and rings our vector 0.
  agent.agent_lane().cpl.consumer_sleeping().store(1);
  auto hello = agent.hello(1);
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->op, rpc::agent_op(rpc::AgentOp::kAgentHello));
  EXPECT_EQ(hello->result, 0);
  EXPECT_EQ(hello->arg0 & 0xFFFF, agent.toe_peer());
  EXPECT_EQ(hello->arg0 >> 16, 0U);
  EXPECT_EQ(hello->arg1, 1U);
  EXPECT_TRUE(rung(agent.ivshmem().doorbells().own_fd(rpc::kAgentVector)));
  agent.agent_lane().cpl.consumer_sleeping().store(0);

  // A process: the first lane, never the agent's.
  const std::int64_t lane = agent.process(7, 1);
  ASSERT_EQ(lane, 0);
  GuestLane shim;
  ASSERT_TRUE(shim.attach(agent.channel(), static_cast<std::uint32_t>(lane)));

  // kSocket without any SidecarFd: the TOE tells the agent which request's B it is.
  shim.cpl.consumer_sleeping().store(1);
  rpc::Descriptor sock{};
  sock.op = static_cast<std::uint16_t>(rpc::Op::kSocket);
  sock.request_id = 555;
  sock.arg0 = AF_INET | std::uint64_t{SOCK_STREAM} << 16;
  auto created = call(agent, shim, sock);
  ASSERT_TRUE(created.has_value());
  ASSERT_GE(created->result, 0);
  // Completions on the process lane ring (VM peer, that process's vector).
  EXPECT_TRUE(rung(agent.ivshmem().doorbells().own_fd(1)));
  shim.cpl.consumer_sleeping().store(0);
  const auto id = static_cast<std::uint32_t>(created->result);
  const std::uint32_t gen = agent.channel().slot(id)->generation.load();
  auto bind = agent.expect(rpc::AgentOp::kAgentBind, id);
  ASSERT_TRUE(bind.has_value());
  EXPECT_EQ(bind->request_id, 555U);
  EXPECT_EQ(bind->arg0, static_cast<std::uint64_t>(lane));
  EXPECT_EQ(bind->arg1, gen);

  // Connect to a loopback listener, exchange bytes both ways.
  KernelListener listener;
  ASSERT_NE(listener.port, 0);
  const sockaddr_in to = loopback(listener.port);
  const std::uint32_t chunk = agent.channel().lane_tx_first(static_cast<std::uint32_t>(lane));
  // The shim filled A and published tx_blocked (a non-blocking or sleeping connect).
  agent.channel().slot(id)->tx_blocked.store(1, std::memory_order_seq_cst);
  auto conn = call(agent, shim,
                   with_address(agent.channel(), chunk, rpc::Op::kConnect, id, &to, sizeof to));
  ASSERT_TRUE(conn.has_value());
  ASSERT_TRUE(conn->result == 0 || conn->result == -EINPROGRESS) << conn->result;
  rpc::UniqueFd peer = listener.accept_one();
  ASSERT_TRUE(peer.valid());
  // Connected: the TOE has A made writable (drain B).
  EXPECT_TRUE(agent.expect(rpc::AgentOp::kAgentDrain, id).has_value());

  const char ping[] = "ping";
  auto sent =
      call(agent, shim, with_address(agent.channel(), chunk + 1, rpc::Op::kSend, id, ping, 4));
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(sent->result, 4);
  char got[8] = {};
  ASSERT_EQ(::recv(peer.get(), got, sizeof got, 0), 4);
  EXPECT_EQ(std::string(got, 4), "ping");

  // Data arrives: the rx ring gets it and the agent is told to write a byte into B.
  ASSERT_EQ(::send(peer.get(), "pong", 4, MSG_NOSIGNAL), 4);
  auto signal = agent.expect(rpc::AgentOp::kAgentSignal, id);
  ASSERT_TRUE(signal.has_value());
  EXPECT_EQ(signal->arg1, gen);
  auto rx = agent.channel().rx_ring(id, rpc::RingEnd::kConsumer);
  ASSERT_TRUE(rx.ok());
  rpc::RxEntry e{};
  ASSERT_EQ(rx->dequeue_burst(&e, 1), 1U);
  EXPECT_EQ(
      std::string(reinterpret_cast<const char*>(agent.channel().rx_pool().chunk(e.chunk).data()),
                  e.length),
      "pong");

  // The peer's FIN: shut B's write side.
  ::shutdown(peer.get(), SHUT_WR);
  EXPECT_TRUE(agent.expect(rpc::AgentOp::kAgentShutWr, id).has_value());

  // The last close of A in the VM: kAgentHangup; the TOE frees the socket and releases B.
  agent.post_agent(rpc::AgentOp::kAgentHangup, 0, 0, gen, id);
  auto release = agent.expect(rpc::AgentOp::kAgentRelease, id);
  ASSERT_TRUE(release.has_value());
  EXPECT_EQ(release->arg1, gen);
  EXPECT_TRUE(
      wait_for([&] { return agent.channel().slot(id)->state.load() == rpc::SocketState::kFree; }));

  // kAgentGone reclaims the process's lane.
  agent.post_agent(rpc::AgentOp::kAgentGone, 0, static_cast<std::uint64_t>(lane), 0);
  EXPECT_TRUE(wait_for([&] { return h.stat("guests_reclaimed") == 1; }));
}

// An agent after hello with one process and a TCP socket on its lane.
class TovmAgentSocket : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(h.ok()) << h.error();
    ASSERT_TRUE(agent.ok());
    const std::int64_t created = agent_socket(agent, 1, lane, shim);
    ASSERT_GE(created, 0);
    id = static_cast<std::uint32_t>(created);
    gen = agent.channel().slot(id)->generation.load();
  }
  ToeHarness h = vm_toe();
  TestAgent agent{h};
  std::int64_t lane = -1;
  GuestLane shim;
  std::uint32_t id = 0;
  std::uint32_t gen = 0;
};

TEST_F(TovmAgentSocket, AConnectionResetIsAKillAndTheAgentReportsTheLastClose) {
  KernelListener listener;
  const sockaddr_in to = loopback(listener.port);
  const std::uint32_t chunk = agent.channel().lane_tx_first(static_cast<std::uint32_t>(lane));
  ASSERT_TRUE(
      call(agent, shim, with_address(agent.channel(), chunk, rpc::Op::kConnect, id, &to, sizeof to))
          .has_value());
  rpc::UniqueFd peer = listener.accept_one();
  ASSERT_TRUE(peer.valid());
  const linger lg{1, 0};
  ASSERT_EQ(::setsockopt(peer.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  peer.reset();  // RST
  auto kill = agent.expect(rpc::AgentOp::kAgentKill, id);
  ASSERT_TRUE(kill.has_value());
  EXPECT_EQ(kill->arg1, gen);
  // A zombie until the agent sees the last close of A.
  EXPECT_NE(agent.channel().slot(id)->state.load(), rpc::SocketState::kFree);
  agent.post_agent(rpc::AgentOp::kAgentHangup, 0, 0, gen, id);
  EXPECT_TRUE(agent.expect(rpc::AgentOp::kAgentRelease, id).has_value());
  EXPECT_TRUE(
      wait_for([&] { return agent.channel().slot(id)->state.load() == rpc::SocketState::kFree; }));
}

TEST(TovmAgentLane, AMalformedAgentDescriptorClosesOnlyTheAgent) {
  ToeHarness h = vm_toe();
  ASSERT_TRUE(h.ok()) << h.error();
  // A process-mode guest on the same TOE (the sidecar still serves, never the agent lane).
  std::string err;
  auto guest = FakeGuest::join(h.options().ivshmem, h.options().sidecar, err);
  ASSERT_NE(guest, nullptr) << err;
  TestAgent agent(h);
  ASSERT_TRUE(agent.ok());
  ASSERT_TRUE(agent.hello(1).has_value());
  const std::int64_t lane = agent.process(1, 1);
  ASSERT_GE(lane, 0);
  EXPECT_NE(static_cast<std::uint32_t>(lane), guest->lane());
  EXPECT_NE(guest->lane(), rpc::agent_lane(agent.channel().config()));

  // An agent may not send kAgentBind: the agent is closed, its lane reclaimed.
  agent.post_agent(rpc::AgentOp::kAgentBind, 0, 0, 0);
  EXPECT_TRUE(wait_for([&] { return h.stat("agent_generation") == 0; }));
  EXPECT_TRUE(wait_for([&] { return h.stat("guests_reclaimed") == 1; }));
  EXPECT_GE(h.stat("bad_descriptors"), 1);

  // The TOE and the process-mode guest go on; a new agent generation is served afresh.
  rpc::UniqueFd a;
  EXPECT_GE(guest->socket(AF_INET, SOCK_STREAM, a), 0);
  auto again = agent.hello(2);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->result, 0);
  EXPECT_EQ(agent.process(2, 1), lane);  // the reclaimed lane is free again
}

TEST_F(TovmAgentSocket, ANewGenerationReclaimsTheOldAgentsLanesAndSockets) {
  EXPECT_TRUE(wait_for([&] { return h.stat("open") == 1; }));

  auto restarted = agent.hello(2);
  ASSERT_TRUE(restarted.has_value());
  EXPECT_EQ(restarted->arg1, 2U);
  EXPECT_TRUE(wait_for([&] { return h.stat("open") == 0; }));
  EXPECT_TRUE(wait_for([&] { return h.stat("guests_reclaimed") == 1; }));
  EXPECT_EQ(h.stat("agent_generation"), 2);
}

TEST(TovmAgentLane, RequestsBeforeHelloCloseTheAgent) {
  ToeHarness h = vm_toe();
  ASSERT_TRUE(h.ok()) << h.error();
  TestAgent agent(h);
  ASSERT_TRUE(agent.ok());
  agent.post_agent(rpc::AgentOp::kAgentProcess, 1, 1, 1);
  EXPECT_TRUE(wait_for([&] { return h.stat("bad_descriptors") == 1; }));
  EXPECT_EQ(agent.hello(1)->result, 0);
}

TEST_F(TovmAgentSocket, AcceptNamesTheAcceptRequestInItsBind) {
  const sockaddr_in any = loopback(0);
  const std::uint32_t chunk = agent.channel().lane_tx_first(static_cast<std::uint32_t>(lane));
  rpc::Descriptor bind = with_address(agent.channel(), chunk, rpc::Op::kBind, id, &any, sizeof any);
  bind.request_id = 2;
  auto bound = call(agent, shim, bind);
  ASSERT_TRUE(bound.has_value());
  ASSERT_EQ(bound->result, 0);
  rpc::Descriptor listen{};
  listen.op = static_cast<std::uint16_t>(rpc::Op::kListen);
  listen.socket = id;
  listen.request_id = 3;
  listen.arg0 = 4;
  auto listening = call(agent, shim, listen);
  ASSERT_TRUE(listening.has_value());
  ASSERT_EQ(listening->result, 0);
  sockaddr_in local{};
  std::memcpy(&local, agent.channel().slot(id)->local.bytes, sizeof local);
  rpc::UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local), 0);
  // A connection to accept makes the listener's A readable.
  EXPECT_TRUE(agent.expect(rpc::AgentOp::kAgentSignal, id).has_value());
  ASSERT_TRUE(wait_for([&] { return agent.channel().slot(id)->accept_ready.load() > 0; }));
  rpc::Descriptor accept{};
  accept.op = static_cast<std::uint16_t>(rpc::Op::kAccept);
  accept.socket = id;
  accept.request_id = 900;
  auto accepted = call(agent, shim, accept);
  ASSERT_TRUE(accepted.has_value());
  ASSERT_GE(accepted->result, 0);
  const auto conn = static_cast<std::uint32_t>(accepted->result);
  auto b = agent.expect(rpc::AgentOp::kAgentBind, conn);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->request_id, 900U);
  EXPECT_EQ(b->arg1, agent.channel().slot(conn)->generation.load());
}

TEST(TovmAgentLane, TheVmLeavingReclaimsTheAgentLaneAndEverythingOfTheAgent) {
  ToeHarness h = vm_toe();
  ASSERT_TRUE(h.ok()) << h.error();
  {
    TestAgent agent(h);
    ASSERT_TRUE(agent.ok());
    std::int64_t lane = -1;
    GuestLane shim;
    ASSERT_GE(agent_socket(agent, 1, lane, shim), 0);
    EXPECT_TRUE(wait_for([&] { return h.stat("open") == 1; }));
  }  // the VM's ivshmem peer leaves
  EXPECT_TRUE(wait_for([&] { return h.stat("agent_generation") == 0; }));
  EXPECT_TRUE(wait_for([&] { return h.stat("open") == 0; }));
  EXPECT_TRUE(wait_for([&] { return h.stat("guests_reclaimed") == 2; }));  // process + agent lane
  // The next VM (or the same after a reboot) finds a fresh agent lane.
  TestAgent next(h);
  ASSERT_TRUE(next.ok());
  auto hello = next.hello(1);
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->result, 0);
  EXPECT_EQ(next.process(1, 1), 0);
}

// ---- message encoding (no TOE) ---------------------------------------------------------------

TEST(AgentPlaceholders, EncodesEachOperationForTheAgent) {
  std::vector<rpc::Descriptor> out;
  AgentPlaceholders ph(8, [&](const rpc::Descriptor& d) { out.push_back(d); });
  EXPECT_FALSE(ph.attached(3));
  ph.signal(3);  // no B: nothing to tell
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(ph.attach(3, {2, 77, 9}, rpc::UniqueFd{}).ok());
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0].op, rpc::agent_op(rpc::AgentOp::kAgentBind));
  EXPECT_EQ(out[0].socket, 3U);
  EXPECT_EQ(out[0].request_id, 77U);
  EXPECT_EQ(out[0].arg0, 2U);
  EXPECT_EQ(out[0].arg1, 9U);
  ph.signal(3);
  ph.drain(3);
  ph.shut_write(3);
  EXPECT_TRUE(ph.prepare_kill(3));
  ph.kill(3);
  ph.signal(3);  // B is closed: no more readiness
  EXPECT_FALSE(ph.attached(3));
  EXPECT_TRUE(ph.matches(3, 9));  // a hangup still comes
  EXPECT_FALSE(ph.matches(3, 8));
  ph.release(3);
  ph.release(3);  // idempotent
  EXPECT_FALSE(ph.matches(3, 9));
  const rpc::AgentOp want[] = {rpc::AgentOp::kAgentBind,  rpc::AgentOp::kAgentSignal,
                               rpc::AgentOp::kAgentDrain, rpc::AgentOp::kAgentShutWr,
                               rpc::AgentOp::kAgentKill,  rpc::AgentOp::kAgentRelease};
  ASSERT_EQ(out.size(), std::size(want));
  for (std::size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].op, rpc::agent_op(want[i])) << i;
    EXPECT_EQ(out[i].socket, 3U);
    EXPECT_EQ(out[i].arg1, 9U);
    EXPECT_EQ(out[i].flags, 0U);
    EXPECT_EQ(out[i].pool, 0U);
    EXPECT_EQ(out[i].result, 0);
  }
  ASSERT_TRUE(ph.attach(4, {0, 1, 2}, rpc::UniqueFd{}).ok());
  ph.forget_all();  // the agent died: nothing more goes to it
  out.clear();
  ph.release(4);
  EXPECT_TRUE(out.empty());
}

TEST(TovmOptionsVmAgent, FlagBelongsToAGuestAndNeedsTwoLanes) {
  const char* ok[] = {"tosec-tovm", "--guest",   "vm", "--ivshmem",
                      "i",          "--sidecar", "s",  "--vm-agent"};
  auto o = parse_tovm_options(8, const_cast<char* const*>(ok));
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_TRUE(o->vm_agent);
  const char* before[] = {"tosec-tovm", "--vm-agent", "--guest",   "vm",
                          "--ivshmem",  "i",          "--sidecar", "s"};
  auto b = parse_tovm_options(8, const_cast<char* const*>(before));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("--vm-agent"), std::string::npos);
  const char* one_lane[] = {"tosec-tovm", "--guest", "vm",      "--ivshmem", "i",
                            "--sidecar",  "s",       "--lanes", "1",         "--vm-agent"};
  auto l = parse_tovm_options(10, const_cast<char* const*>(one_lane));
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.error().message.find("--lanes 2"), std::string::npos);
}

}  // namespace
}  // namespace tosec::tovm::test
