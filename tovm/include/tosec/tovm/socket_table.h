// SocketTable: the TOE's private, authoritative state of one guest's sockets.
//
// Socket ids index the guest region's SocketSlot array, but the slots are guest-writable: the
// TOE never decides anything from a slot's contents. Everything it needs (state, backend
// handle, who holds end B of the placeholder, tx queue, accept queue, rx accounting) lives here,
// and the TOE only *publishes* into the slot. Single-threaded: owned by the guest's worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "tosec/rpc/descriptor.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/spsc_ring.h"
#include "tosec/rpc/unique_fd.h"
#include "tosec/tovm/stack_backend.h"

namespace tosec::tovm {

// Bytes a guest sent, copied out of its tx chunk into TOE memory (the one copy), waiting for
// the stack to take them.
struct TxBuffer {
  std::vector<std::byte> bytes;
  std::size_t sent = 0;  // prefix already handed to the stack
  int flags = 0;
  bool has_to = false;  // datagram with a destination (sendto)
  SockAddr to;
};

// A kSend completion held back because the socket's TOE queue is at its cap: the guest gets its
// chunk (its credit) back only when the queue drains, which is how the guest feels TCP
// backpressure.
struct DeferredCompletion {
  std::uint32_t lane;
  std::uint32_t lane_epoch;  // the lane's owner when queued (a reclaimed lane drops these)
  rpc::Descriptor cpl;
};

struct AcceptedConn {
  BackendHandle handle = kNoHandle;
  SockAddr peer;
};

inline constexpr std::size_t kDefaultTxCap = 256 * 1024;  // SO_SNDBUF-like per-socket cap

struct TSocket {
  rpc::SocketState state = rpc::SocketState::kFree;
  std::uint32_t generation = 0;
  int domain = 0, type = 0, protocol = 0;
  BackendHandle handle = kNoHandle;
  bool agent_held = false;  // end B is in the VM's agent (VM mode), else in the TOE
  rpc::SpscRing rx;         // producer end of the slot's rx ring
  // tx
  std::deque<TxBuffer> txq;
  std::size_t tx_bytes = 0;  // queued, not yet taken by the stack
  std::size_t tx_cap = kDefaultTxCap;
  std::deque<DeferredCompletion> deferred;
  bool shut_wr_pending = false;  // SHUT_WR after the queue drains
  // rx
  bool rx_paused = false;  // no read interest: ring full or pool empty (backpressure)
  bool peer_closed = false;
  bool read_shut = false;
  std::uint32_t rx_lent = 0;  // rx chunks of this socket now held by the guest
  // errors and close
  int so_error = 0;
  bool reset = false;
  bool linger0 = false;  // SO_LINGER {1, 0}: close = RST, drop the queue
  // The connection died (reset, refused, timed out): B was closed so that A shows
  // POLLERR|POLLHUP; the socket lives on until sock_diag no longer finds `a` (the guest closed
  // its last reference). See GuestSession::kill_placeholder.
  bool zombie = false;
  // inspection (docs/svm.md): the stream's bytes go through an SVM chain; 0 = not inspected
  std::uint64_t inspect_stream = 0;
  std::size_t inspect_out = 0;  // outgoing bytes inside the chain or waiting for it (in tx_bytes)
  std::size_t inspect_in = 0;   // incoming bytes inside the chain
  std::deque<std::vector<std::byte>> inspect_out_wait;  // no pool chunk yet
  std::deque<std::vector<std::byte>> rx_held;  // passed by the chain, waiting for guest rx room
  std::size_t rx_held_bytes = 0;
  std::size_t rx_held_off = 0;      // bytes of rx_held.front() already given to the guest
  bool inspect_rx_stalled = false;  // not reading: chain or held bytes at their cap
  bool fin_deferred = false;        // the peer's FIN, after the bytes still in the chain
  // listeners
  int backlog = 0;
  std::deque<AcceptedConn> acceptq;
  Interest interest;  // what the backend currently watches
  // The peer's address when it is known without asking the stack (accept's result, an IPv4
  // stream connect's destination): publishing it then costs no getpeername.
  SockAddr known_peer;
};

class SocketTable {
 public:
  explicit SocketTable(std::uint32_t max_sockets);

  std::uint32_t capacity() const { return static_cast<std::uint32_t>(sockets_.size()); }
  // The lowest free id, marked kOpen (ENFILE when the guest's table is full).
  rpc::Result<std::uint32_t> allocate();
  // Back to kFree (generation bumped); the caller has closed the handle and B.
  void release(std::uint32_t id);
  // nullptr unless `id` is in range and allocated.
  TSocket* find(std::uint32_t id);
  const TSocket* find(std::uint32_t id) const;
  TSocket& at(std::uint32_t id) { return sockets_[id]; }
  std::uint32_t open_count() const { return open_; }
  // Sockets per state, for status (index = SocketState value).
  std::vector<std::uint32_t> count_by_state() const;

 private:
  std::vector<TSocket> sockets_;
  std::vector<std::uint32_t> free_;  // descending, so back() is the lowest id
  std::uint32_t open_ = 0;
};

}  // namespace tosec::tovm
