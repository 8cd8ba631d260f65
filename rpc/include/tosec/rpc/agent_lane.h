// The agent lane: how a VM's in-guest agent and the TOE talk (VM mode, decision 0008).
//
// Inside a VM no fd reaches the host, so the sidecar of process mode (guest_channel.h) cannot
// carry ends B. `tosec-guest-agent` serves the shims of the VM the sidecar and ivshmem-server
// protocols they already speak, holds every end B, and talks to the TOE over ONE lane of the
// guest region: the agent lane. It is the last lane, `agent_lane(geometry)`, reserved when the
// TOE serves the guest in VM mode (`tosec-tovm --vm-agent`); the sidecar never hands it out.
//
// The agent lane uses the lane rings and the 64-byte Descriptor unchanged (so the TOE's ring,
// flush and sleep machinery applies as is); only the ops differ. Agent -> TOE messages go on
// the lane's request ring, TOE -> agent messages on its completion ring. Every message the
// agent writes is as untrusted as a guest descriptor: validate_agent_request() checks op,
// flags, reserved fields and ranges, and a bad one closes the agent lane (and reclaims the VM's
// lanes), never the TOE.
//
// Doorbells: the agent rings (toe_peer, toe_vector) after enqueuing, under the same Dekker
// rule as a shim (notifier.h). The TOE rings (agent peer, kAgentVector) after enqueuing.
//
//  agent -> TOE (request ring)                         TOE -> agent (completion ring)
//  kAgentHello    arg0 = agent peer id (IVPosition)    kAgentHello  result = 0 / -errno;
//                 arg1 = generation (nonzero, new at   arg0 = toe_peer | toe_vector << 16;
//                 every agent start); a hello with a   arg1 = echoes the generation
//                 new generation reclaims every lane
//                 of that peer first (old agent died)
//  kAgentProcess  request_id = agent's token;          kAgentProcess request_id = token;
//                 arg0 = pid; arg1 = guest_vector      result = lane, or -errno (-EBUSY:
//                 (the MSI-X vector the agent gave      no free lane)
//                 that process: 1 <= v < vectors)
//  kAgentGone     arg0 = lane (that process's sidecar  (none)
//                 hung up: reclaim the lane, as on
//                 sidecar EOF in process mode)
//  kAgentHangup   socket; arg1 = socket generation     (none)
//                 (the last reference to A in the VM
//                 is gone: EOF on B, or, after
//                 kAgentKill, sock_diag saw A go)
//
//  TOE -> agent only (completion ring), all with socket = the TOE's socket id and
//  arg1 = that socket's generation (the agent ignores stale generations):
//  kAgentBind     arg0 = lane; request_id = the kSocket/kAccept request id whose SidecarFd
//                 carried end B on that lane's process. From now on `socket` names that B.
//                 (The shim sends the SidecarFd before it enqueues the request, so the agent
//                 normally has B already; if not, it keeps the bind pending until B arrives,
//                 and sends kAgentHangup if the process goes away first.)
//  kAgentSignal   write one byte into B (A becomes readable)         PlaceholderEnd::signal
//  kAgentDrain    drain B, keeping a final sentinel (A writable)     ::drain_keep_sentinel
//  kAgentShutWr   shutdown(B, SHUT_WR) (A sees POLLRDHUP, reads 0)   ::shut_write
//  kAgentKill     close B over its unread sentinel (A: ECONNRESET, POLLERR|POLLHUP); the agent
//                 then watches A by sock_diag and sends kAgentHangup when the last A is gone
//  kAgentRelease  close B and forget the socket (the TOE already freed it; no hangup)
#pragma once

#include <cstdint>

#include "tosec/rpc/descriptor.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/status.h"

namespace tosec::rpc {

// Agent-lane ops, above every lane op so a descriptor is never ambiguous.
enum class AgentOp : std::uint16_t {
  kAgentHello = 32,
  kAgentProcess = 33,
  kAgentGone = 34,
  kAgentHangup = 35,
  kAgentBind = 40,
  kAgentSignal = 41,
  kAgentDrain = 42,
  kAgentShutWr = 43,
  kAgentKill = 44,
  kAgentRelease = 45,
};

constexpr std::uint16_t agent_op(AgentOp op) { return static_cast<std::uint16_t>(op); }

// The agent's own MSI-X vector (its lane's completions); shim processes get 1..vectors-1.
inline constexpr std::uint16_t kAgentVector = 0;

// The lane reserved for the agent in VM mode: the last one.
constexpr std::uint32_t agent_lane(const GuestChannelConfig& cfg) { return cfg.lanes - 1; }

// Validates a descriptor the agent wrote (copied out of the request ring): an agent->TOE op,
// flags and unused fields zero, socket < limits.max_socket for kAgentHangup, lane < lanes - 1
// for kAgentGone, nonzero generation and peer id < 65536 for kAgentHello. The error names the
// field and its value.
Status validate_agent_request(const Descriptor& d, const GuestChannelConfig& cfg);

}  // namespace tosec::rpc
