// Doorbells: how one peer of a region wakes another.
//
// A doorbell is addressed as (peer id, vector), exactly as QEMU's ivshmem device does: peer ids
// are the 16-bit ids the ivshmem server hands out, and each peer owns `vectors` interrupt
// vectors. Ringing (peer, v) wakes whoever waits on vector v of that peer.
//
// Backends:
//  - EventfdDoorbells (process mode): one eventfd per (peer, vector), received from the ivshmem
//    server over SCM_RIGHTS. Ringing writes 1 to the peer's eventfd; waiting polls our own.
//  - BAR0 Doorbell register + UIO/VFIO eventfds (VM mode): see docs/decisions, VM-mode issue.
#pragma once

#include <cstdint>
#include <map>
#include <shared_mutex>
#include <vector>

#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::rpc {

using PeerId = std::uint16_t;  // ivshmem peer ids fit the high half of the Doorbell register
using Vector = std::uint16_t;

// Ringing side of a doorbell.
class DoorbellRinger {
 public:
  virtual ~DoorbellRinger() = default;
  // Wakes vector `vector` of peer `peer`. Fails with ENOENT for an unknown peer or vector.
  virtual Status ring(PeerId peer, Vector vector) = 0;
};

// Waiting side: our own vectors.
class DoorbellWaiter {
 public:
  virtual ~DoorbellWaiter() = default;
  // Blocks until our vector `vector` is rung or `timeout_ns` passes (-1 = forever).
  // Returns true if rung (and consumes the ring), false on timeout. EINTR is retried.
  virtual Result<bool> wait(Vector vector, std::int64_t timeout_ns) = 0;
};

// Process-mode backend: eventfds. Thread-safe: peers may be added or removed (by the ivshmem
// client's event loop) while data-path threads ring.
class EventfdDoorbells final : public DoorbellRinger, public DoorbellWaiter {
 public:
  EventfdDoorbells() = default;

  // Our own vectors (the server sends them last, tagged with our id).
  void set_own(PeerId self, std::vector<UniqueFd> fds);
  // Creates `vectors` fresh eventfds as our own vectors, without an ivshmem server: for peers
  // that share them by fork() (tests, benchmarks) and ring themselves as (self, v).
  Status create_own(PeerId self, unsigned vectors);
  // Adds a vector fd of another peer (the server sends them one by one, in vector order).
  void add_peer_vector(PeerId peer, UniqueFd fd);
  // Forgets a departed peer and closes its fds.
  void remove_peer(PeerId peer);
  bool has_peer(PeerId peer) const;
  std::size_t peer_vector_count(PeerId peer) const;
  PeerId self() const { return self_; }

  // Own eventfd of a vector, for callers that multiplex with poll/epoll. -1 if none.
  int own_fd(Vector vector) const;

  Status ring(PeerId peer, Vector vector) override;
  Result<bool> wait(Vector vector, std::int64_t timeout_ns) override;

 private:
  mutable std::shared_mutex mu_;
  PeerId self_ = 0;
  std::vector<UniqueFd> own_;
  std::map<PeerId, std::vector<UniqueFd>> peers_;
};

// Creates a non-blocking, close-on-exec eventfd.
Result<UniqueFd> make_eventfd();

}  // namespace tosec::rpc
