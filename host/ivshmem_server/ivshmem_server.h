// IvshmemServer: the doorbell server of one shared-memory region, speaking QEMU's ivshmem
// client/server protocol (docs/ivshmem-protocol.md), so QEMU's ivshmem-doorbell device and
// tosec::rpc::IvshmemClient processes can be peers of the same region.
//
// Single-threaded poll loop. Per peer it keeps a FIFO of outgoing messages and sends them as the
// peer's socket accepts them, so a slow peer never blocks the others (QEMU's example server sends
// blindly and loses messages instead). A peer that stops reading for too long, sends anything
// (the protocol is one-way) or hangs up is dropped, and its departure is announced.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "peer_id_allocator.h"
#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::host {

// QEMU's ivshmem-server accepts at most 64 vectors (IVSHMEM_SERVER_MAX_VECTORS); we keep its
// limit so every configuration we accept also works with QEMU's server and device defaults.
inline constexpr unsigned kMaxIvshmemVectors = 64;

struct IvshmemServerConfig {
  std::string socket_path = "/tmp/ivshmem_socket";
  unsigned vectors = 1;  // eventfds per peer, 0..kMaxIvshmemVectors
  IdPolicy id_policy = IdPolicy::kLowestFree;
  bool verbose = false;  // log joins and departures on stdout (QEMU's -v)
  // Messages queued for a peer that does not read before it is dropped.
  std::size_t max_queued_per_peer = 1 << 16;
};

class IvshmemServer {
 public:
  // Listens on config.socket_path and hands `shm_fd` to every peer. A socket file left behind
  // by a dead server is replaced; a live server on the path, or a non-socket file, is an error.
  static rpc::Result<std::unique_ptr<IvshmemServer>> start(IvshmemServerConfig config,
                                                           rpc::UniqueFd shm_fd);
  IvshmemServer(const IvshmemServer&) = delete;
  IvshmemServer& operator=(const IvshmemServer&) = delete;
  // Disconnects every peer and unlinks the socket file (if it is still ours).
  ~IvshmemServer();

  // Runs the event loop until request_stop().
  rpc::Status run();
  // One loop iteration: waits up to `timeout_ms` (-1 = forever) and handles what is ready.
  rpc::Status poll_once(int timeout_ms);
  // Makes run() return. Async-signal-safe and callable from any thread.
  void request_stop();

  // Loop-thread only (or while the loop is not running).
  std::vector<PeerId> peer_ids() const;
  const std::string& socket_path() const { return config_.socket_path; }

 private:
  // An fd shared by everyone who still has to send it: a queued announcement keeps a departed
  // peer's eventfd open until it went out.
  using SharedFd = std::shared_ptr<const rpc::UniqueFd>;
  struct Outgoing {
    std::int64_t value;
    SharedFd fd;  // null: no fd
  };
  struct Peer {
    PeerId id = 0;
    rpc::UniqueFd sock;
    std::vector<SharedFd> vectors;
    std::deque<Outgoing> out;
    std::string drop_reason;  // non-empty: to be removed
  };

  IvshmemServer(IvshmemServerConfig config, rpc::UniqueFd shm_fd);
  rpc::Status listen();
  void accept_all();
  void add_peer(rpc::UniqueFd sock);
  void enqueue(Peer& p, std::int64_t value, SharedFd fd);
  void flush(Peer& p);
  void on_peer_readable(Peer& p);
  void reap();
  void drop(Peer& p, std::string reason);
  void log(const std::string& line) const;

  IvshmemServerConfig config_;
  SharedFd shm_;
  rpc::UniqueFd listen_;
  rpc::UniqueFd wake_;  // eventfd written by request_stop()
  std::uint64_t socket_ino_ = 0;
  std::atomic<bool> stop_{false};
  std::int64_t accept_paused_until_ms_ = 0;  // backoff after EMFILE
  PeerIdAllocator ids_;
  std::map<PeerId, Peer> peers_;
};

}  // namespace tosec::host
