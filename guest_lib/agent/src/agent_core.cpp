#include "tosec/agent/agent_core.h"

#include <sys/socket.h>

#include "tosec/agent/log.h"
#include "tosec/rpc/notifier.h"

namespace tosec::agent {

namespace {

using rpc::AgentOp;

rpc::Descriptor make(AgentOp op) {
  rpc::Descriptor d{};
  d.op = rpc::agent_op(op);
  return d;
}

constexpr std::int64_t kMaxErrno = 4095;

}  // namespace

rpc::Result<AgentCore> AgentCore::attach(const rpc::GuestChannel& channel,
                                         rpc::DoorbellRinger& ringer, rpc::PeerId self,
                                         std::uint64_t generation, unsigned vectors, Hooks hooks) {
  const auto& cfg = channel.config();
  if (cfg.lanes < 2) {
    return rpc::Error{EINVAL, "guest region has " + std::to_string(cfg.lanes) +
                                  " lanes: VM mode needs at least 2 (one is the agent's)"};
  }
  if (generation == 0) return rpc::Error{EINVAL, "agent generation must be nonzero"};
  const std::uint32_t lane = rpc::agent_lane(cfg);
  auto req = channel.lane_ring(lane, true, rpc::RingEnd::kProducer);
  if (!req) return req.error();
  auto cpl = channel.lane_ring(lane, false, rpc::RingEnd::kConsumer);
  if (!cpl) return cpl.error();
  AgentCore c;
  c.req_ = rpc::TypedRing<rpc::Descriptor>(std::move(*req));
  c.cpl_ = rpc::TypedRing<rpc::Descriptor>(std::move(*cpl));
  // The agent sleeps only in its epoll loop, never between a check of the ring and the wait:
  // with the flag set for good the TOE rings after every batch and no completion is stranded.
  c.cpl_.raw().consumer_sleeping().store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  c.ringer_ = &ringer;
  c.hooks_ = std::move(hooks);
  c.self_ = self;
  c.generation_ = generation;
  c.vectors_ = vectors;
  c.lanes_ = cfg.lanes;
  c.max_sockets_ = cfg.max_sockets;
  c.lane_live_.assign(cfg.lanes, false);
  c.scratch_.resize(64 * 1024);
  return c;
}

rpc::Status AgentCore::send_hello(std::span<const rpc::PeerId> candidates) {
  auto d = make(AgentOp::kAgentHello);
  d.arg0 = self_;
  d.arg1 = generation_;
  if (!req_.enqueue(d)) return rpc::Error{ENOSPC, "agent lane request ring full at hello"};
  ring_hello_again(candidates);
  return {};
}

void AgentCore::ring_hello_again(std::span<const rpc::PeerId> candidates) {
  if (ready_) return;
  for (rpc::PeerId p : candidates) (void)ringer_->ring(p, 0);
}

void AgentCore::enqueue(const rpc::Descriptor& d) {
  outbox_.push_back(d);
  flush();
}

void AgentCore::flush() {
  bool sent = false;
  while (!outbox_.empty() && req_.enqueue(outbox_.front())) {
    outbox_.pop_front();
    sent = true;
  }
  if (!sent || !ready_) return;
  if (auto s = rpc::notify(req_.raw().consumer_sleeping(), *ringer_, toe_peer_, toe_vector_); !s) {
    log_line("ringing the TOE (peer " + std::to_string(toe_peer_) + "): " + s.message());
  }
}

rpc::Status AgentCore::send_process(std::uint64_t token, std::uint32_t pid,
                                    rpc::Vector guest_vector) {
  if (!ready_) return rpc::Error{EAGAIN, "the TOE has not answered the agent's hello yet"};
  auto d = make(AgentOp::kAgentProcess);
  d.request_id = token;
  d.arg0 = pid;
  d.arg1 = guest_vector;
  enqueue(d);
  return {};
}

rpc::Status AgentCore::send_gone(std::uint32_t lane) {
  if (lane + 1 >= lanes_) return rpc::Error{EINVAL, "kAgentGone: lane " + std::to_string(lane)};
  lane_live_[lane] = false;
  for (auto it = pending_b_.begin(); it != pending_b_.end();) {
    it = it->first.first == lane ? pending_b_.erase(it) : std::next(it);
  }
  for (auto it = pending_bind_.begin(); it != pending_bind_.end();) {
    if (it->first.first != lane) {
      ++it;
      continue;
    }
    auto s = sockets_.find(it->second);
    if (s != sockets_.end() && !s->second.b.valid()) {
      const std::uint64_t generation = s->second.generation;
      sockets_.erase(s);
      hangup(it->second, generation);
    }
    it = pending_bind_.erase(it);
  }
  auto d = make(AgentOp::kAgentGone);
  d.arg0 = lane;
  enqueue(d);
  return {};
}

void AgentCore::add_b(std::uint32_t lane, std::uint64_t request_id, rpc::UniqueFd b) {
  const LaneRequest key{lane, request_id};
  if (auto it = pending_bind_.find(key); it != pending_bind_.end()) {
    const std::uint32_t socket = it->second;
    pending_bind_.erase(it);
    attach_b(socket, std::move(b));
    return;
  }
  pending_b_[key] = std::move(b);  // a second B for the same request replaces the first
}

void AgentCore::attach_b(std::uint32_t socket, rpc::UniqueFd fd) {
  auto it = sockets_.find(socket);
  if (it == sockets_.end()) return;
  Socket& s = it->second;
  auto b = rpc::PlaceholderEnd::adopt(std::move(fd));
  if (!b) {
    log_line("socket " + std::to_string(socket) + ": end B unusable: " + b.error().message);
    const std::uint64_t generation = s.generation;
    sockets_.erase(it);
    hangup(socket, generation);
    return;
  }
  s.b = std::move(*b);
  log_debug("socket " + std::to_string(socket) + " generation " + std::to_string(s.generation) +
            " bound to the B of lane " + std::to_string(s.lane) + " request " +
            std::to_string(s.request_id));
  if (s.drain) s.b.drain_keep_sentinel(scratch_);
  if (s.signal) s.b.signal();
  if (s.shut) s.b.shut_write();
  if (s.kill) {
    kill(socket);
    return;
  }
  if (hooks_.watch_b) hooks_.watch_b(s.b.fd(), socket, tag_of(s.generation));
}

void AgentCore::on_b_hangup(std::uint32_t socket, std::uint32_t tag) {
  auto it = sockets_.find(socket);
  if (it == sockets_.end() || !it->second.b.valid() || tag_of(it->second.generation) != tag) {
    return;  // an event for a B closed earlier in the same batch
  }
  const std::uint64_t generation = it->second.generation;
  sockets_.erase(it);  // closes B
  hangup(socket, generation);
}

void AgentCore::hangup(std::uint32_t socket, std::uint64_t generation) {
  auto d = make(AgentOp::kAgentHangup);
  d.socket = socket;
  d.arg1 = generation;
  enqueue(d);
  log_debug("socket " + std::to_string(socket) + ": last A gone, hangup sent");
}

rpc::Status AgentCore::poll() {
  if (cpl_.raw().broken()) return rpc::Error{EPROTO, "agent lane: " + cpl_.raw().error()};
  // Set again each time (our own cache line, so it costs nothing): a TOE that (re)formats the
  // agent lane after we attached clears it, and would then never ring us.
  cpl_.raw().consumer_sleeping().store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  rpc::Descriptor batch[32];
  for (;;) {
    const std::uint32_t n = cpl_.dequeue_burst(batch);
    for (std::uint32_t i = 0; i < n; ++i) {
      handle(batch[i]);
      if (!fatal_) return fatal_;
    }
    if (n < std::size(batch)) break;
  }
  if (cpl_.raw().broken()) return rpc::Error{EPROTO, "agent lane: " + cpl_.raw().error()};
  if (req_.raw().broken()) return rpc::Error{EPROTO, "agent lane: " + req_.raw().error()};
  flush();
  return {};
}

void AgentCore::handle(const rpc::Descriptor& d) {
  if (d.op == rpc::agent_op(AgentOp::kAgentHello)) {
    fatal_ = handle_hello(d);
    return;
  }
  if (!ready_) {
    log_line("TOE message op " + std::to_string(d.op) + " before its hello reply: dropped");
    return;
  }
  switch (static_cast<AgentOp>(d.op)) {
    case AgentOp::kAgentProcess: {
      std::int64_t result = d.result;
      if (result >= 0 && result + 1 >= static_cast<std::int64_t>(lanes_)) {
        log_line("kAgentProcess reply: lane " + std::to_string(result) + " outside [0, " +
                 std::to_string(lanes_ - 1) + "): refused");
        result = -EPROTO;
      } else if (result < -kMaxErrno) {
        result = -EPROTO;
      }
      if (result >= 0) lane_live_[static_cast<std::size_t>(result)] = true;
      if (hooks_.process_reply) hooks_.process_reply(d.request_id, result);
      return;
    }
    case AgentOp::kAgentBind:
      handle_bind(d);
      return;
    case AgentOp::kAgentSignal:
    case AgentOp::kAgentDrain:
    case AgentOp::kAgentShutWr:
    case AgentOp::kAgentKill:
    case AgentOp::kAgentRelease:
      handle_socket_op(d);
      return;
    default:
      log_line("TOE message with op " + std::to_string(d.op) + " (not a TOE->agent op): dropped");
  }
}

rpc::Status AgentCore::handle_hello(const rpc::Descriptor& d) {
  if (d.arg1 != generation_) {
    log_line("hello reply for generation " + std::to_string(d.arg1) + " (ours is " +
             std::to_string(generation_) + "): stale, ignored");
    return {};
  }
  if (ready_) return {};
  if (d.result < 0) {
    return rpc::Error{static_cast<int>(-d.result),
                      "the TOE refused the agent's hello: " + std::to_string(d.result)};
  }
  const std::uint64_t peer = d.arg0 & 0xffff;
  const std::uint64_t vector = (d.arg0 >> 16) & 0xffff;
  if ((d.arg0 >> 32) != 0 || vector >= vectors_) {
    return rpc::Error{EPROTO, "hello reply: arg0 " + std::to_string(d.arg0) + " names vector " +
                                  std::to_string(vector) + " (we have " + std::to_string(vectors_) +
                                  ")"};
  }
  toe_peer_ = static_cast<rpc::PeerId>(peer);
  toe_vector_ = static_cast<rpc::Vector>(vector);
  ready_ = true;
  log_line("the TOE answered: peer " + std::to_string(toe_peer_) + " vector " +
           std::to_string(toe_vector_) + ", generation " + std::to_string(generation_));
  return {};
}

void AgentCore::handle_bind(const rpc::Descriptor& d) {
  if (d.socket >= max_sockets_ || d.arg0 + 1 >= lanes_) {
    log_line("kAgentBind: socket " + std::to_string(d.socket) + " / lane " +
             std::to_string(d.arg0) + " out of range: dropped");
    return;
  }
  const auto lane = static_cast<std::uint32_t>(d.arg0);
  if (auto old = sockets_.find(d.socket); old != sockets_.end()) {
    // The TOE reuses an id it released: whatever we still hold under it is stale.
    log_debug("socket " + std::to_string(d.socket) + " rebound: old B dropped");
    for (auto it = pending_bind_.begin(); it != pending_bind_.end();) {
      it = it->second == d.socket ? pending_bind_.erase(it) : std::next(it);
    }
    sockets_.erase(old);
  }
  Socket& s = sockets_[d.socket];
  s.generation = d.arg1;
  s.lane = lane;
  s.request_id = d.request_id;
  const LaneRequest key{lane, d.request_id};
  if (auto it = pending_b_.find(key); it != pending_b_.end()) {
    rpc::UniqueFd b = std::move(it->second);
    pending_b_.erase(it);
    attach_b(d.socket, std::move(b));
    return;
  }
  if (!lane_live_[lane]) {
    sockets_.erase(d.socket);
    hangup(d.socket, d.arg1);  // that process is gone: its B will never come
    return;
  }
  pending_bind_[key] = d.socket;
}

void AgentCore::handle_socket_op(const rpc::Descriptor& d) {
  if (d.op == rpc::agent_op(AgentOp::kAgentRelease)) {
    // Freed by the TOE while we watched its A: no hang-up is owed any more.
    std::erase_if(killed_,
                  [&](const Killed& k) { return k.socket == d.socket && k.generation == d.arg1; });
  }
  auto it = d.socket < max_sockets_ ? sockets_.find(d.socket) : sockets_.end();
  if (it == sockets_.end() || it->second.generation != d.arg1) {
    log_debug("op " + std::to_string(d.op) + " for socket " + std::to_string(d.socket) +
              " generation " + std::to_string(d.arg1) + ": stale or unknown, ignored");
    return;
  }
  Socket& s = it->second;
  const bool have_b = s.b.valid();
  switch (static_cast<AgentOp>(d.op)) {
    case AgentOp::kAgentSignal:
      have_b ? s.b.signal() : void(s.signal = true);
      return;
    case AgentOp::kAgentDrain:
      have_b ? s.b.drain_keep_sentinel(scratch_) : void(s.drain = true);
      return;
    case AgentOp::kAgentShutWr:
      have_b ? s.b.shut_write() : void(s.shut = true);
      return;
    case AgentOp::kAgentKill:
      have_b ? kill(d.socket) : void(s.kill = true);
      return;
    case AgentOp::kAgentRelease:
      for (auto p = pending_bind_.begin(); p != pending_bind_.end();) {
        p = p->second == d.socket ? pending_bind_.erase(p) : std::next(p);
      }
      sockets_.erase(it);
      return;
    default:
      return;
  }
}

void AgentCore::kill(std::uint32_t socket) {
  Socket& s = sockets_.at(socket);
  const std::uint64_t generation = s.generation;
  auto a = watch_.peer_of(s.b.fd());
  sockets_.erase(socket);  // closes B over its sentinel: A sees ECONNRESET
  if (!a) {
    // ENOTCONN: A is already gone. Anything else: we cannot watch, so say it now rather than
    // leak the TOE's socket.
    if (a.error().code != ENOTCONN)
      log_line("socket " + std::to_string(socket) + ": " + a.error().message);
    hangup(socket, generation);
    return;
  }
  killed_.push_back({socket, generation, *a});
  log_debug("socket " + std::to_string(socket) + ": killed (B closed over its sentinel), " +
            "watching A by sock_diag");
}

void AgentCore::check_killed() {
  for (auto it = killed_.begin(); it != killed_.end();) {
    auto alive = watch_.alive(it->a);
    if (alive && *alive) {
      ++it;
      continue;
    }
    if (!alive) log_line("socket " + std::to_string(it->socket) + ": " + alive.error().message);
    const Killed k = *it;
    it = killed_.erase(it);
    hangup(k.socket, k.generation);
  }
}

void AgentCore::close_all() {
  sockets_.clear();
  pending_b_.clear();
  pending_bind_.clear();
  killed_.clear();
}

}  // namespace tosec::agent
