// GuestSession: the agent lane of VM mode (decision 0008, rpc/agent_lane.h).
//
// The VM is one ivshmem peer; its in-guest agent speaks for every process in it. It opens a
// process lane per shim with kAgentProcess (the VM's peer id, the vector it gave that process),
// holds every end B, and reports hang-ups. Its descriptors are as untrusted as any guest's: each
// is validated, and a bad one closes the agent (its lanes and sockets), never the TOE.
#include "tosec/rpc/agent_lane.h"
#include "tosec/tovm/guest_session.h"

namespace tosec::tovm {

void GuestSession::activate_agent_lane() {
  const std::uint32_t lane = rpc::agent_lane(opts_.channel);
  Lane& l = lanes_[lane];
  rpc::SpscRing req, cpl;
  if (!format_lane_rings(lane, req, cpl)) {
    log(LogLevel::kError, "agent lane " + std::to_string(lane) + ": rings do not attach");
    return;
  }
  const std::uint32_t epoch = l.epoch;
  l = Lane{};
  l.epoch = epoch;
  l.active = true;
  l.agent = true;
  l.vector = rpc::kAgentVector;
  l.req = std::move(req);
  l.cpl = std::move(cpl);
  // l.peer stays unknown (0, never rung) until kAgentHello names it.
}

void GuestSession::handle_agent_request(std::uint32_t lane, const rpc::Descriptor& d) {
  if (auto st = rpc::validate_agent_request(d, opts_.channel); !st) {
    ++counters_.bad_descriptors;
    return close_agent(st.message());
  }
  const auto op = static_cast<rpc::AgentOp>(d.op);
  if (op == rpc::AgentOp::kAgentHello) return agent_hello(lane, d);
  if (agent_generation_ == 0) {
    ++counters_.bad_descriptors;
    return close_agent("agent descriptor: op " + std::to_string(d.op) + " before kAgentHello");
  }
  switch (op) {
    case rpc::AgentOp::kAgentProcess:
      return agent_process(lane, d);
    case rpc::AgentOp::kAgentGone:
      return agent_gone(d);
    case rpc::AgentOp::kAgentHangup:
      return agent_hangup(d);
    default:
      break;  // validate_agent_request admits no other op
  }
}

void GuestSession::agent_reply(std::uint32_t lane, const rpc::Descriptor& req,
                               std::int64_t result) {
  rpc::Descriptor c{};
  c.op = req.op;
  c.request_id = req.request_id;
  c.result = result;
  push_completion(lane, c, false);
}

void GuestSession::agent_hello(std::uint32_t lane, const rpc::Descriptor& d) {
  const auto peer = static_cast<rpc::PeerId>(d.arg0);
  if (peer == ivshmem_.self_id()) {
    ++counters_.bad_descriptors;
    return close_agent("agent descriptor: arg0 (peer id) " + std::to_string(peer) +
                       " is the TOE's own");
  }
  if (agent_generation_ != 0 && (peer != agent_peer_ || d.arg1 != agent_generation_)) {
    // A new agent start: the old one died, and with it every B it held.
    log(LogLevel::kInfo, "agent generation " + std::to_string(d.arg1) + " (peer " +
                             std::to_string(peer) + ") replaces generation " +
                             std::to_string(agent_generation_) + ": reclaiming its lanes");
    drop_agent();
  }
  Lane& l = lanes_[lane];
  l.peer = peer;
  if (!ivshmem_.doorbells().has_peer(peer)) (void)ivshmem_.process_events();
  if (!ivshmem_.doorbells().has_peer(peer)) {
    // No doorbell to ring it: the answer still goes into the ring for an agent that polls.
    log(LogLevel::kError, "agent hello: peer " + std::to_string(peer) + " is not on the server");
    return agent_reply(lane, d, -ENXIO);
  }
  if (agent_generation_ == 0) {
    log(LogLevel::kInfo, "agent (peer " + std::to_string(peer) + ", generation " +
                             std::to_string(d.arg1) + ") on lane " + std::to_string(lane));
  }
  agent_peer_ = peer;
  agent_generation_ = d.arg1;
  rpc::Descriptor c{};
  c.op = d.op;
  c.request_id = d.request_id;
  c.result = 0;
  c.arg0 = std::uint64_t{ivshmem_.self_id()} | std::uint64_t{0} << 16;  // our vector 0
  c.arg1 = d.arg1;
  push_completion(lane, c, false);
}

void GuestSession::agent_process(std::uint32_t lane, const rpc::Descriptor& d) {
  const auto vector = static_cast<std::uint16_t>(d.arg1);
  const std::size_t vectors = ivshmem_.doorbells().peer_vector_count(agent_peer_);
  if (vector >= vectors) {
    ++counters_.bad_descriptors;
    return close_agent("agent descriptor: arg1 (guest vector) " + std::to_string(vector) +
                       " is not below the VM's " + std::to_string(vectors) + " vectors");
  }
  const auto pid = static_cast<std::uint32_t>(d.arg0);
  auto opened = open_lane(pid, agent_peer_, vector, true);
  if (!opened) {
    log(LogLevel::kError, "agent: no free lane for pid " + std::to_string(pid));
    return agent_reply(lane, d, -opened.error().code);
  }
  log(LogLevel::kInfo, "lane " + std::to_string(*opened) + " -> pid " + std::to_string(pid) +
                           " in the VM (peer " + std::to_string(agent_peer_) + ", vector " +
                           std::to_string(vector) + ")");
  agent_reply(lane, d, *opened);
}

void GuestSession::agent_gone(const rpc::Descriptor& d) {
  const auto lane = static_cast<std::uint32_t>(d.arg0);
  Lane& l = lanes_[lane];
  if (!l.active || l.dying) return;  // the TOE reclaimed it first (a broken ring, ...)
  if (!l.via_agent) {
    ++counters_.bad_descriptors;
    return close_agent("agent descriptor: arg0 (lane) " + std::to_string(lane) +
                       " is not a lane the agent opened");
  }
  mark_lane_dying(lane, "agent: process gone");
}

void GuestSession::agent_hangup(const rpc::Descriptor& d) {
  // A stale generation is a race, not a fault: the TOE freed the socket while the agent saw
  // the last close of A.
  if (!agent_ph_->matches(d.socket, d.arg1)) {
    log(LogLevel::kDebug, "agent hangup: socket " + std::to_string(d.socket) + " generation " +
                              std::to_string(d.arg1) + " is not held by the agent");
    return;
  }
  closing_.push_back(d.socket);  // as EOF on B: after this iteration's requests
}

void GuestSession::close_agent(const std::string& why) {
  log(LogLevel::kError, "agent (peer " + std::to_string(agent_peer_) + ", generation " +
                            std::to_string(agent_generation_) + ") closed: " + why);
  drop_agent();
}

void GuestSession::drop_agent() {
  for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
    if (lanes_[i].active && lanes_[i].via_agent) mark_lane_dying(i, "agent gone");
  }
  // Every B the agent held is gone: each of those sockets saw its last close.
  for (std::uint32_t id = 0; id < sockets_.capacity(); ++id) {
    if (const TSocket* s = sockets_.find(id); s != nullptr && s->agent_held) {
      closing_.push_back(id);
    }
  }
  if (agent_ph_) agent_ph_->forget_all();
  Lane& l = lanes_[rpc::agent_lane(opts_.channel)];
  l.out.clear();
  l.out_held.clear();
  l.peer = 0;
  agent_peer_ = 0;
  agent_generation_ = 0;
}

void GuestSession::emit_to_agent(const rpc::Descriptor& d) {
  if (agent_generation_ == 0) return;  // no agent: nobody holds B
  push_completion(rpc::agent_lane(opts_.channel), d, false);
}

}  // namespace tosec::tovm
