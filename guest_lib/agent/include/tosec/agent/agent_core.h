// AgentCore: the agent's half of the agent lane (rpc/include/tosec/rpc/agent_lane.h) and the
// B ends it holds for the TOE.
//
// No sockets or epoll here: the event loop (agent_loop.h) feeds it completions, B ends and
// hang-ups, and it answers through Hooks, so the whole protocol is unit-testable against a fake
// TOE in a test region.
//
// Trust: the TOE's messages are validated like a guest's (op, ranges, generations); a bad one is
// logged and dropped, it never indexes anything unchecked. Stale generations are ignored.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "tosec/rpc/agent_lane.h"
#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/placeholder_end.h"
#include "tosec/rpc/spsc_ring.h"
#include "tosec/tovm/placeholder_watch.h"

namespace tosec::agent {

class AgentCore {
 public:
  struct Hooks {
    // The TOE's answer to send_process(token, ...): a lane, or -errno.
    std::function<void(std::uint64_t token, std::int64_t result)> process_reply;
    // Watch `fd` (a bound B) for hang-up; report it with on_b_hangup(socket, tag).
    std::function<void(int fd, std::uint32_t socket, std::uint32_t tag)> watch_b;
  };

  // Attaches the agent lane of `channel` (guest side: request producer, completion consumer).
  // `ringer` rings the TOE; `vectors` bounds the toe_vector the TOE may name.
  static rpc::Result<AgentCore> attach(const rpc::GuestChannel& channel,
                                       rpc::DoorbellRinger& ringer, rpc::PeerId self,
                                       std::uint64_t generation, unsigned vectors, Hooks hooks);

  // kAgentHello. Until the TOE answers, its peer id is unknown: the hello is rung on vector 0
  // of every candidate (ring_hello_again() repeats that, e.g. from a timer).
  rpc::Status send_hello(std::span<const rpc::PeerId> candidates);
  void ring_hello_again(std::span<const rpc::PeerId> candidates);
  bool ready() const { return ready_; }
  rpc::PeerId toe_peer() const { return toe_peer_; }
  rpc::Vector toe_vector() const { return toe_vector_; }
  std::uint64_t generation() const { return generation_; }

  rpc::Status send_process(std::uint64_t token, std::uint32_t pid, rpc::Vector guest_vector);
  // The process on `lane` hung up its sidecar: its unbound B ends are dropped, binds still
  // waiting for their B get a hang-up, and the TOE hears kAgentGone.
  rpc::Status send_gone(std::uint32_t lane);
  // End B from a SidecarFd of the process on `lane`.
  void add_b(std::uint32_t lane, std::uint64_t request_id, rpc::UniqueFd b);
  // EOF on a bound B: the last A in the VM is closed.
  void on_b_hangup(std::uint32_t socket, std::uint32_t tag);

  // Handles every TOE message on the completion ring, then flushes queued requests. An error
  // is fatal for the agent (the TOE refused the hello, or a ring index is corrupt).
  rpc::Status poll();
  // sock_diag check of killed sockets whose A may be gone (call from a timer).
  void check_killed();
  bool has_killed() const { return !killed_.empty(); }
  // Sends requests that did not fit the ring earlier.
  void flush();
  // Closes every B (SIGTERM).
  void close_all();

  std::size_t bound_sockets() const { return sockets_.size(); }

 private:
  struct Socket {
    std::uint64_t generation = 0;
    rpc::PlaceholderEnd b;  // invalid while the bind waits for its B
    std::uint32_t lane = 0;
    std::uint64_t request_id = 0;
    // Operations that came before B: replayed in this order when it arrives.
    bool drain = false, signal = false, shut = false, kill = false;
  };
  struct Killed {
    std::uint32_t socket;
    std::uint64_t generation;
    tovm::UnixSocketRef a;
  };
  using LaneRequest = std::pair<std::uint32_t, std::uint64_t>;  // (lane, request_id)

  AgentCore() = default;
  void enqueue(const rpc::Descriptor& d);
  void handle(const rpc::Descriptor& d);
  rpc::Status handle_hello(const rpc::Descriptor& d);
  void handle_bind(const rpc::Descriptor& d);
  void handle_socket_op(const rpc::Descriptor& d);
  void attach_b(std::uint32_t socket, rpc::UniqueFd b);
  void kill(std::uint32_t socket);
  void hangup(std::uint32_t socket, std::uint64_t generation);
  static std::uint32_t tag_of(std::uint64_t generation) {
    return static_cast<std::uint32_t>(generation & 0xffffff);
  }

  rpc::TypedRing<rpc::Descriptor> req_;
  rpc::TypedRing<rpc::Descriptor> cpl_;
  rpc::DoorbellRinger* ringer_ = nullptr;
  Hooks hooks_;
  rpc::PeerId self_ = 0;
  std::uint64_t generation_ = 0;
  unsigned vectors_ = 1;
  std::uint32_t lanes_ = 0;  // the TOE's lanes, the agent lane included
  std::uint32_t max_sockets_ = 0;
  bool ready_ = false;
  rpc::Status fatal_;
  rpc::PeerId toe_peer_ = 0;
  rpc::Vector toe_vector_ = 0;
  std::deque<rpc::Descriptor> outbox_;                 // requests waiting for ring room
  std::vector<bool> lane_live_;                        // lanes the TOE gave a live sidecar
  std::map<LaneRequest, rpc::UniqueFd> pending_b_;     // B ends not yet bound
  std::map<LaneRequest, std::uint32_t> pending_bind_;  // binds waiting for their B
  std::map<std::uint32_t, Socket> sockets_;            // by the TOE's socket id
  std::vector<Killed> killed_;
  tovm::PlaceholderWatch watch_;
  std::vector<std::byte> scratch_;
};

}  // namespace tosec::agent
