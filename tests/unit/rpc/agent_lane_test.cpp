// validate_agent_request: every agent -> TOE descriptor field the TOE rejects, by name.
#include "tosec/rpc/agent_lane.h"

#include <gtest/gtest.h>

namespace tosec::rpc {
namespace {

GuestChannelConfig config() {
  GuestChannelConfig c;
  c.lanes = 4;  // process lanes 0..2, agent lane 3
  c.max_sockets = 32;
  return c;
}

Descriptor agent(AgentOp op) {
  Descriptor d{};
  d.op = agent_op(op);
  switch (op) {
    case AgentOp::kAgentHello:
      d.request_id = 7;
      d.arg0 = 3;  // peer id
      d.arg1 = 1;  // generation
      break;
    case AgentOp::kAgentProcess:
      d.request_id = 8;
      d.arg0 = 1234;  // pid
      d.arg1 = 1;     // guest vector
      break;
    case AgentOp::kAgentGone:
      d.arg0 = 2;  // lane
      break;
    case AgentOp::kAgentHangup:
      d.socket = 31;
      d.arg1 = 5;  // socket generation
      break;
    default:
      break;
  }
  return d;
}

std::string reject(const Descriptor& d) {
  const Status s = validate_agent_request(d, config());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), EINVAL);
  return s.message();
}

TEST(AgentLane, TheAgentLaneIsTheLastLane) {
  EXPECT_EQ(agent_lane(config()), 3U);
  // Above every lane op: an agent descriptor is never read as a socket call.
  EXPECT_GT(agent_op(AgentOp::kAgentHello), kOpKick);
}

TEST(AgentLane, AcceptsEachAgentRequest) {
  for (AgentOp op :
       {AgentOp::kAgentHello, AgentOp::kAgentProcess, AgentOp::kAgentGone, AgentOp::kAgentHangup}) {
    const Status s = validate_agent_request(agent(op), config());
    EXPECT_TRUE(s.ok()) << agent_op(op) << ": " << s.message();
  }
}

TEST(AgentLane, RejectsOpsTheAgentMayNotSend) {
  for (std::uint16_t op : {std::uint16_t{0}, static_cast<std::uint16_t>(Op::kSocket), kOpKick,
                           agent_op(AgentOp::kAgentBind), agent_op(AgentOp::kAgentRelease),
                           std::uint16_t{36}, std::uint16_t{999}}) {
    Descriptor d = agent(AgentOp::kAgentHello);
    d.op = op;
    EXPECT_NE(reject(d).find("op " + std::to_string(op)), std::string::npos);
  }
}

TEST(AgentLane, RejectsEachNonzeroUnusedFieldByName) {
  auto with = [](auto set) {
    Descriptor d = agent(AgentOp::kAgentHello);
    set(d);
    return reject(d);
  };
  EXPECT_NE(with([](Descriptor& d) { d.flags = 1; }).find("flags 1"), std::string::npos);
  EXPECT_NE(with([](Descriptor& d) { d.reserved0 = 2; }).find("reserved0 2"), std::string::npos);
  EXPECT_NE(with([](Descriptor& d) { d.reserved1 = 3; }).find("reserved1 3"), std::string::npos);
  EXPECT_NE(with([](Descriptor& d) { d.pool = 1; }).find("pool 1"), std::string::npos);
  EXPECT_NE(with([](Descriptor& d) { d.chunk = 4; }).find("chunk 4"), std::string::npos);
  EXPECT_NE(with([](Descriptor& d) { d.offset = 5; }).find("offset 5"), std::string::npos);
  EXPECT_NE(with([](Descriptor& d) { d.length = 6; }).find("length 6"), std::string::npos);
  EXPECT_NE(with([](Descriptor& d) { d.result = 7; }).find("result 7"), std::string::npos);
  EXPECT_NE(with([](Descriptor& d) { d.socket = 8; }).find("socket 8"), std::string::npos);
  Descriptor gone = agent(AgentOp::kAgentGone);
  gone.request_id = 9;
  EXPECT_NE(reject(gone).find("request_id 9"), std::string::npos);
  gone = agent(AgentOp::kAgentGone);
  gone.arg1 = 10;
  EXPECT_NE(reject(gone).find("arg1 10"), std::string::npos);
  Descriptor hangup = agent(AgentOp::kAgentHangup);
  hangup.arg0 = 11;
  EXPECT_NE(reject(hangup).find("arg0 11"), std::string::npos);
}

TEST(AgentLane, RejectsHelloWithoutGenerationOrWithAWidePeerId) {
  Descriptor d = agent(AgentOp::kAgentHello);
  d.arg1 = 0;
  EXPECT_NE(reject(d).find("arg1 (generation) 0"), std::string::npos);
  d = agent(AgentOp::kAgentHello);
  d.arg0 = 65536;
  EXPECT_NE(reject(d).find("arg0 (peer id) 65536"), std::string::npos);
}

TEST(AgentLane, RejectsProcessWithTheAgentsVectorOrAWidePid) {
  Descriptor d = agent(AgentOp::kAgentProcess);
  d.arg1 = kAgentVector;
  EXPECT_NE(reject(d).find("arg1 (guest vector) 0"), std::string::npos);
  d.arg1 = 65536;
  EXPECT_NE(reject(d).find("arg1 (guest vector) 65536"), std::string::npos);
  d = agent(AgentOp::kAgentProcess);
  d.arg0 = 1ULL << 32;
  EXPECT_NE(reject(d).find("arg0 (pid)"), std::string::npos);
}

TEST(AgentLane, RejectsGoneForTheAgentLaneOrBeyond) {
  Descriptor d = agent(AgentOp::kAgentGone);
  d.arg0 = 3;  // the agent lane itself
  EXPECT_NE(reject(d).find("arg0 (lane) 3"), std::string::npos);
  d.arg0 = 1ULL << 40;
  EXPECT_NE(reject(d).find("arg0 (lane)"), std::string::npos);
}

TEST(AgentLane, RejectsHangupOutOfRangeOrWithoutGeneration) {
  Descriptor d = agent(AgentOp::kAgentHangup);
  d.socket = 32;
  EXPECT_NE(reject(d).find("socket 32"), std::string::npos);
  d = agent(AgentOp::kAgentHangup);
  d.arg1 = 0;
  EXPECT_NE(reject(d).find("arg1 (socket generation) 0"), std::string::npos);
  d.arg1 = 1ULL << 32;
  EXPECT_NE(reject(d).find("arg1 (socket generation)"), std::string::npos);
}

}  // namespace
}  // namespace tosec::rpc
