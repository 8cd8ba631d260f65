// IvshmemClient: joins a shared-memory region as a peer of an ivshmem server, exactly as QEMU's
// ivshmem-doorbell device does, so process peers and VM peers can share one region.
//
//   IvshmemClient c({.vectors = 2});
//   if (auto s = c.connect("/run/tosec/g0.sock"); !s) ...;   // handshake, region mapped
//   c.doorbells().ring(peer, 1);                              // wake vector 1 of `peer`
//   poll(c.fd()) -> c.process_events();                       // peers joining and leaving
//
// Threading: connect/process_events/wait_* and the callbacks run on one thread (the caller's
// event loop). doorbells() is thread-safe and may be rung from data-path threads meanwhile.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/shm_mapping.h"
#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::rpc {

struct IvshmemClientOptions {
  // Interrupt vectors this peer uses, like QEMU's `vectors=`. The handshake completes when the
  // server has sent this many own vectors; it must not exceed the server's `-n`. If the server has
  // more, the extra fds (own and peers') are closed, as the ivshmem spec prescribes.
  unsigned vectors = 1;
  // Bound on the whole handshake (a socket that is not an ivshmem server never answers);
  // negative waits forever.
  int connect_timeout_ms = 5000;
};

class IvshmemClient {
 public:
  using PeerCallback = std::function<void(PeerId)>;

  explicit IvshmemClient(IvshmemClientOptions options = {});
  IvshmemClient(const IvshmemClient&) = delete;
  IvshmemClient& operator=(const IvshmemClient&) = delete;
  ~IvshmemClient();

  // Connects and performs the handshake synchronously: version (must be 0), own id, shared
  // memory (mapped), the existing peers' vectors, then our own vectors. Peers already present
  // are reported by peers(), not through on_peer_joined. May be called once.
  Status connect(const std::string& socket_path);

  // The server socket, for poll/epoll: readable means process_events() has work.
  int fd() const { return sock_.get(); }

  // Handles every message available now, without blocking: peers joining (their vectors) and
  // leaving. on_peer_joined(id) fires once a peer's last vector (of options.vectors) arrived, so
  // every vector is ringable inside the callback; on_peer_left(id) fires after its doorbells are
  // gone. Returns the number of messages handled. Errors: ECONNRESET when the server went away,
  // EPROTO for a protocol violation; the client is then disconnected.
  Result<std::size_t> process_events();

  // Waits (processing events) until peer `id` has joined with all its vectors, or, with
  // std::nullopt, until the next join this client processes (not one already in peers()).
  // Returns the peer's id; ETIMEDOUT.
  // A peer that joins and leaves again while we wait counts as joined. Negative timeouts wait
  // forever.
  Result<PeerId> wait_for_peer(std::optional<PeerId> id, int timeout_ms);
  // Waits (processing events) until peer `id` is gone (immediately if it is not known).
  Status wait_for_peer_left(PeerId id, int timeout_ms);

  void on_peer_joined(PeerCallback cb) { on_joined_ = std::move(cb); }
  void on_peer_left(PeerCallback cb) { on_left_ = std::move(cb); }

  bool connected() const { return sock_.valid(); }
  PeerId self_id() const { return self_; }
  const ShmMapping& region() const { return region_; }
  EventfdDoorbells& doorbells() { return doorbells_; }
  // Other peers with all their vectors, ascending.
  std::vector<PeerId> peers() const;
  // Fds closed because the server sent more vectors than options.vectors (spec-conformant, but
  // a sign of mismatched configuration).
  std::size_t extra_vectors_closed() const { return extra_closed_; }

 private:
  enum class Event { kNone, kJoined, kLeft };
  // Applies one message after the version and id; says whether a peer completed or left.
  Result<Event> apply(std::int64_t value, UniqueFd fd);
  // Handles the messages available now, firing callbacks; `joined_hook` (may be empty) also
  // sees every peer that completed, even one that left again within the same drain.
  Result<std::size_t> drain(const PeerCallback& joined_hook);
  // Polls the socket until readable or the deadline (monotonic ms) passes; false on timeout.
  Result<bool> wait_readable(std::int64_t deadline_ms);
  bool complete(PeerId id) const;
  Error fail(Error e);  // disconnects, returns the error

  IvshmemClientOptions options_;
  UniqueFd sock_;
  PeerId self_ = 0;
  ShmMapping region_;
  EventfdDoorbells doorbells_;
  std::vector<UniqueFd> own_pending_;     // own vectors until all arrived
  bool own_done_ = false;                 // own vectors handed to doorbells_
  std::map<PeerId, unsigned> peer_vecs_;  // vectors received per other peer
  std::size_t extra_closed_ = 0;
  PeerCallback on_joined_;
  PeerCallback on_left_;
};

}  // namespace tosec::rpc
