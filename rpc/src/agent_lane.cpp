// The agent lane's validation: see agent_lane.h (the wire contract) and decision 0008.
#include "tosec/rpc/agent_lane.h"

#include <string>

namespace tosec::rpc {

namespace {
Error bad(const char* field, std::uint64_t value, const char* why) {
  return Error{EINVAL,
               std::string("agent descriptor: ") + field + " " + std::to_string(value) + " " + why};
}

bool is_agent_request(std::uint16_t op) {
  return op == agent_op(AgentOp::kAgentHello) || op == agent_op(AgentOp::kAgentProcess) ||
         op == agent_op(AgentOp::kAgentGone) || op == agent_op(AgentOp::kAgentHangup);
}
}  // namespace

Status validate_agent_request(const Descriptor& d, const GuestChannelConfig& cfg) {
  if (!is_agent_request(d.op)) return bad("op", d.op, "is not an agent->TOE op");
  if (d.flags != 0) return bad("flags", d.flags, "is not zero");
  if (d.reserved0 != 0) return bad("reserved0", d.reserved0, "is not zero");
  if (d.reserved1 != 0) return bad("reserved1", d.reserved1, "is not zero");
  // No agent op carries a buffer: the pool reference stays empty.
  if (d.pool != 0) return bad("pool", d.pool, "is not zero");
  if (d.chunk != 0) return bad("chunk", d.chunk, "is not zero");
  if (d.offset != 0) return bad("offset", d.offset, "is not zero");
  if (d.length != 0) return bad("length", d.length, "is not zero");
  if (d.result != 0) return bad("result", static_cast<std::uint64_t>(d.result), "is not zero");
  const auto op = static_cast<AgentOp>(d.op);
  // Fields an op does not use must be zero, so that a later meaning cannot be misread.
  const bool uses_socket = op == AgentOp::kAgentHangup;
  const bool uses_request_id = op == AgentOp::kAgentHello || op == AgentOp::kAgentProcess;
  const bool uses_arg1 = op != AgentOp::kAgentGone;
  if (!uses_socket && d.socket != 0) return bad("socket", d.socket, "is not zero");
  if (!uses_request_id && d.request_id != 0) return bad("request_id", d.request_id, "is not zero");
  if (!uses_arg1 && d.arg1 != 0) return bad("arg1", d.arg1, "is not zero");
  switch (op) {
    case AgentOp::kAgentHello:
      if (d.arg0 >= 65536) return bad("arg0 (peer id)", d.arg0, "is not below 65536");
      if (d.arg1 == 0) return bad("arg1 (generation)", d.arg1, "is zero");
      break;
    case AgentOp::kAgentProcess:
      if (d.arg0 > 0xFFFF'FFFFU) return bad("arg0 (pid)", d.arg0, "is not a pid");
      if (d.arg1 == kAgentVector || d.arg1 >= 65536) {
        return bad("arg1 (guest vector)", d.arg1, "is not in 1..65535");
      }
      break;
    case AgentOp::kAgentGone:
      if (d.arg0 >= agent_lane(cfg)) {
        return bad("arg0 (lane)", d.arg0, "is not a process lane (lanes - 1 or more)");
      }
      break;
    case AgentOp::kAgentHangup:
      if (d.socket >= cfg.max_sockets) return bad("socket", d.socket, "is out of range");
      if (d.arg0 != 0) return bad("arg0", d.arg0, "is not zero");
      if (d.arg1 == 0 || d.arg1 > 0xFFFF'FFFFU) {
        return bad("arg1 (socket generation)", d.arg1, "is not a socket generation");
      }
      break;
    default:
      break;
  }
  return {};
}

}  // namespace tosec::rpc
