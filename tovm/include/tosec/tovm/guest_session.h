// GuestSession: everything the TOE does for one guest.
//
// It joins the guest's ivshmem server as a peer, formats the guest region, serves the sidecar
// (lane handshake and end-B fd passing), consumes the lanes' request rings, drives the stack
// backend for the guest's sockets and publishes their state into the region.
//
// Threading: single-threaded. A Worker (worker.h) owns the epoll set; the session registers its
// fds there with tokens from make_token() and the worker hands events back through on_event().
// The per-iteration order (run_once) is: dispatch events, drain request rings, then handle
// deaths (sidecar EOF / peer departure) and last-reference closes (EOF on B), so requests a
// guest queued before closing are always processed first.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tosec/rpc/buffer_pool.h"
#include "tosec/rpc/descriptor.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/ivshmem_client.h"
#include "tosec/rpc/region.h"
#include "tosec/rpc/spsc_ring.h"
#include "tosec/rpc/unique_fd.h"
#include "tosec/tovm/inspection_link.h"
#include "tosec/tovm/options.h"
#include "tosec/tovm/placeholders.h"
#include "tosec/tovm/request_handler.h"
#include "tosec/tovm/socket_table.h"
#include "tosec/tovm/stack_backend.h"

namespace tosec::tovm {

// epoll tokens: kind in the top 16 bits, then the session's number on its worker (12 bits: a
// worker serves several guests and routes an event by it), then an index (36 bits).
enum class TokenKind : std::uint16_t {
  kDoorbell = 1,
  kIvshmem,
  kSidecarListen,
  kSidecarNew,
  kSidecarLane,
  kBEnd,
  kBackend,
  kStatusListen,
  kSignal,
  kInspectDoorbell,  // the inspection region: verdicts waiting (docs/svm.md)
  kInspectIvshmem,   // the inspection region's ivshmem server: SVMs joining and leaving
};
inline constexpr std::uint32_t kMaxSessionsPerWorker = 4096;
inline constexpr std::uint64_t kTokenIndexMask = (std::uint64_t{1} << 36) - 1;
constexpr std::uint64_t make_token(TokenKind k, std::uint64_t index = 0,
                                   std::uint32_t session = 0) {
  return std::uint64_t{static_cast<std::uint16_t>(k)} << 48 |
         std::uint64_t{session & (kMaxSessionsPerWorker - 1)} << 36 | (index & kTokenIndexMask);
}
constexpr TokenKind token_kind(std::uint64_t t) { return static_cast<TokenKind>(t >> 48); }
constexpr std::uint32_t token_session(std::uint64_t t) {
  return static_cast<std::uint32_t>(t >> 36) & (kMaxSessionsPerWorker - 1);
}
constexpr std::uint64_t token_index(std::uint64_t t) { return t & kTokenIndexMask; }

struct SessionCounters {
  std::uint64_t bytes_from_guest = 0;        // copied out of tx chunks
  std::uint64_t bytes_to_guest = 0;          // put into rx chunks
  std::uint64_t bytes_tx_wire = 0;           // taken by the stack
  std::uint64_t bytes_rx_wire = 0;           // read from the stack
  std::uint64_t rx_backpressure_events = 0;  // a socket stopped reading (ring full / no chunk)
  std::uint64_t bad_descriptors = 0;
  std::uint64_t stale_buffer_returns = 0;       // kBufferReturn for a loan already ended (benign)
  std::uint64_t async_setsockopt_failures = 0;  // posted (no-reply) setsockopts that failed
  std::uint64_t guests_reclaimed = 0;           // lanes of dead guest processes reclaimed
  std::uint64_t rx_locks_released = 0;          // rx_locks a reclaimed lane died holding
  std::uint64_t lanes_closed_broken = 0;
  std::uint64_t streams_blocked = 0;       // connections reset by an SVM chain's verdict
  std::uint64_t streams_inspected = 0;     // connections a policy sent through a chain
  std::uint64_t inspect_passed_bytes = 0;  // bytes the chains passed (both directions)
};

class GuestSession {
 public:
  // Connects to the ivshmem server, formats the region, listens on the sidecar path. `tag`:
  // the session's number on its worker, carried in every epoll token it registers.
  static rpc::Result<std::unique_ptr<GuestSession>> create(const TovmOptions& opts, int epoll_fd,
                                                           std::unique_ptr<StackBackend> backend,
                                                           std::uint32_t tag = 0);
  ~GuestSession();
  GuestSession(const GuestSession&) = delete;
  GuestSession& operator=(const GuestSession&) = delete;

  void on_event(std::uint64_t token, std::uint32_t events);
  // Drains request rings and does the deferred work of this iteration. True if any request
  // was processed (the caller loops again before sleeping).
  bool run_once();
  // Dekker step before epoll_wait: sets consumer_sleeping on every active request ring, fences,
  // re-checks. False means work arrived: do not sleep (flags are cleared again).
  bool prepare_sleep();
  void after_wake();
  // Any request waiting in an active lane, or a verdict from an SVM (for the optional spin
  // before sleeping).
  bool has_requests();
  // Takes the stack's ready sockets now, without waiting for the worker's epoll set to report
  // the backend's event fd (the busy-poll's shortcut: one epoll_wait instead of two per event).
  // True if there were any.
  bool poll_backend() { return on_backend_ready() > 0; }
  // True if completions wait for room in a completion ring (the worker then sleeps briefly).
  bool has_stalled_output() const;
  // True while dead connections wait for the guest's last close of their placeholder (the
  // worker then wakes at least every kZombieCheckMs to look). Not the agent's zombies (VM
  // mode): their last close comes as kAgentHangup, nothing to poll.
  bool has_zombies() const;
  static constexpr int kZombieCheckMs = 10;
  // With inspection: how long the worker may sleep before the chain's deadlines must be
  // checked (-1: until an event).
  int inspection_sleep_ms() const;
  // Closes every socket and unlinks the sidecar path.
  void shutdown();

  // Not const: ring occupancy reads the rings' shared indices (status JSON "metrics"). "cpus" is
  // the calling thread's CPU list: the worker's, which answers the status socket.
  std::string status_json();
  static std::string thread_cpus();
  // SIGHUP: re-read the topology file (no-op without inspection). A rejected file is logged
  // and shown as "topology_error"; the old topology stays in force.
  void reload_topology();
  const InspectionLink* inspection() const { return inspect_.get(); }
  const SessionCounters& counters() const { return counters_; }
  const rpc::GuestChannel& channel() const { return channel_; }
  rpc::PeerId self_peer() const { return ivshmem_.self_id(); }
  const TovmOptions& options() const { return opts_; }
  // The worker thread that serves this session (status JSON).
  void set_worker_index(unsigned w) { worker_index_ = w; }

 private:
  struct Lane {
    bool active = false;
    std::uint32_t epoch = 0;
    std::uint32_t pid = 0;
    rpc::PeerId peer = 0;
    rpc::SpscRing req;  // consumer end
    rpc::SpscRing cpl;  // producer end
    rpc::UniqueFd sidecar;
    std::unordered_map<std::uint64_t, rpc::UniqueFd> pending_b;  // request_id -> end B
    std::vector<rpc::Descriptor> out;                            // completions not yet in the ring
    std::vector<std::uint8_t> out_held;        // per `out` entry: 1 = its tx chunk is held by us
    std::vector<std::uint32_t> blocked_check;  // sockets whose tx credit came back
    std::uint64_t requests = 0;
    bool dying = false;  // sidecar EOF / peer gone: reclaim after draining
    // VM mode (decision 0008): the agent lane itself, or a process lane the agent opened (no
    // sidecar; B ends are the agent's). Completions ring (peer, vector).
    bool agent = false;
    bool via_agent = false;
    std::uint16_t vector = 0;
  };

  GuestSession(const TovmOptions& opts, int epoll_fd, std::unique_ptr<StackBackend> backend,
               std::uint32_t tag);
  rpc::Status init();
  std::uint64_t token(TokenKind k, std::uint64_t index = 0) const {
    return make_token(k, index, tag_);
  }
  void log(LogLevel level, const std::string& msg) const;
  void epoll_add(int fd, std::uint32_t events, std::uint64_t token);
  void epoll_del(int fd);

  // sidecar and lanes (guest_session.cpp)
  void accept_sidecars();
  void on_sidecar_new(std::uint64_t conn);
  // Reads B ends off the sidecar: all that are queued, or (want != 0) up to that request's.
  void read_sidecar(std::uint32_t lane, std::uint64_t want = 0);
  void handle_hello(std::uint64_t conn, rpc::UniqueFd fd);
  // A free process lane with fresh rings for (pid, peer, vector); -EBUSY when none is free.
  rpc::Result<std::uint32_t> open_lane(std::uint32_t pid, rpc::PeerId peer, std::uint16_t vector,
                                       bool via_agent);
  bool format_lane_rings(std::uint32_t lane, rpc::SpscRing& req, rpc::SpscRing& cpl);
  void mark_lane_dying(std::uint32_t lane, const char* why);
  void reclaim_lane(std::uint32_t lane);
  void release_rx_locks(std::uint32_t lane);  // held by the dead process of `lane`
  void on_peer_left(rpc::PeerId peer);
  std::span<std::byte> lane_area(std::uint32_t lane) const;

  // requests (guest_session_ops.cpp)
  bool drain_lane(std::uint32_t lane);
  // Serves what every process lane has queued (bounded: one ring's worth each) before a new lane
  // opens, so a forked child's first request cannot overtake what its parent posted before fork.
  void drain_process_lanes();
  void handle_request(std::uint32_t lane, const rpc::Descriptor& d);
  void complete(std::uint32_t lane, const rpc::Descriptor& req, std::int64_t result);
  // Queues a completion; `held` = it returns a tx chunk the TOE holds (ledger released at flush).
  void push_completion(std::uint32_t lane, const rpc::Descriptor& c, bool held);
  void flush_completions(std::uint32_t lane);
  rpc::UniqueFd take_b_end(std::uint32_t lane, std::uint64_t request_id);
  void op_socket(std::uint32_t lane, const rpc::Descriptor& d);
  void op_bind(std::uint32_t lane, const rpc::Descriptor& d);
  void op_listen(std::uint32_t lane, const rpc::Descriptor& d);
  void op_accept(std::uint32_t lane, const rpc::Descriptor& d);
  void op_connect(std::uint32_t lane, const rpc::Descriptor& d);
  void op_send(std::uint32_t lane, const rpc::Descriptor& d);
  void op_shutdown(std::uint32_t lane, const rpc::Descriptor& d);
  void op_setsockopt(std::uint32_t lane, const rpc::Descriptor& d);
  void op_getsockopt(std::uint32_t lane, const rpc::Descriptor& d);
  void op_buffer_return(const rpc::Descriptor& d);
  void op_kick(const rpc::Descriptor& d);
  rpc::Result<SockAddr> read_sockaddr(const rpc::Descriptor& d, std::uint32_t len) const;

  // sockets and data path (guest_session_io.cpp)
  rpc::Status setup_socket(std::uint32_t id, std::uint32_t lane, std::uint64_t request_id,
                           rpc::UniqueFd b_end);
  // Whoever holds the socket's end B (placeholders.h).
  Placeholders& ph(std::uint32_t id);
  std::size_t on_backend_ready();  // events handled
  void on_socket_event(std::uint32_t id, const BackendEvent& ev);
  void on_connect_done(std::uint32_t id, const BackendEvent& ev);
  void accept_pending(std::uint32_t id);
  void read_socket(std::uint32_t id);
  void flush_tx(std::uint32_t id);
  void release_deferred(std::uint32_t id, bool all);
  void on_socket_error(std::uint32_t id, int err);
  void update_interest(std::uint32_t id);
  void resume_paused();
  void signal_readable(std::uint32_t id);
  void resignal_readable(std::uint32_t id);  // kKick 1; a dead reader's socket
  void signal_arrival(std::uint32_t id);
  void write_readiness_byte(std::uint32_t id);
  void publish_paused(std::uint32_t id);
  void mirror_peer_fin(std::uint32_t id);
  void make_writable(std::uint32_t id);
  void kill_placeholder(std::uint32_t id);
  void check_zombies();
  void publish_state(std::uint32_t id, rpc::SocketState st);
  // Local and (with_peer) peer address into the slot. A socket that cannot have a peer (bound,
  // listening) skips the getpeername that would only say ENOTCONN.
  // Local (and peer) address into the slot; `local`, when the caller knows it exactly (a bind
  // to an IPv4 address and port), spares the getsockname.
  void publish_addresses(std::uint32_t id, bool with_peer = true, const SockAddr* local = nullptr);
  // SO_SNDBUF/SO_RCVBUF into the slot (kOpen sockets; 0 otherwise). A fresh socket takes the
  // kernel's defaults for its domain and type, read from a socket at most once a second.
  void publish_buffer_sizes(std::uint32_t id, bool fresh);
  void begin_close(std::uint32_t id);
  void finish_close(std::uint32_t id);
  void check_tx_blocked(std::uint32_t lane);
  void publish_peer_fin(std::uint32_t id);
  // Lends a filled rx chunk to the guest: ownership, accounting, the socket's rx ring entry.
  void lend_rx_chunk(std::uint32_t id, std::uint32_t chunk, std::uint32_t length);
  void request_return_doorbells(std::uint32_t id);

  // inspection (guest_session_inspect.cpp, docs/svm.md)
  rpc::Status init_inspection();
  void inspect_open(std::uint32_t id, bool guest_is_client);
  void inspect_submit_out(std::uint32_t id, std::vector<std::byte> bytes);
  void inspect_read(std::uint32_t id);
  bool inspect_poll();
  void inspect_deliver(std::uint64_t stream, svm::Direction dir, std::span<const std::byte> b);
  void inspect_block(const svm::BlockInfo& info);
  void reset_both_ways(std::uint32_t id);
  void drain_rx_held(std::uint32_t id);
  void inspect_forget(std::uint32_t id);
  void mark_inspect_waiting(std::uint32_t id);  // retried in inspect_poll()
  // Incoming reading may go on: the chain plus the passed-but-undelivered bytes are under
  // their cap and the inspection pool has a free chunk.
  bool inspect_rx_room(const TSocket& s) const;
  // VM mode: the agent lane (guest_session_agent.cpp, rpc/agent_lane.h)
  void activate_agent_lane();
  void handle_agent_request(std::uint32_t lane, const rpc::Descriptor& d);
  void agent_hello(std::uint32_t lane, const rpc::Descriptor& d);
  void agent_process(std::uint32_t lane, const rpc::Descriptor& d);
  void agent_gone(const rpc::Descriptor& d);
  void agent_hangup(const rpc::Descriptor& d);
  void agent_reply(std::uint32_t lane, const rpc::Descriptor& req, std::int64_t result);
  // A bad agent descriptor: the agent is closed (drop_agent), never the TOE.
  void close_agent(const std::string& why);
  // Reclaims every lane the agent opened and closes every socket whose B it held.
  void drop_agent();
  void emit_to_agent(const rpc::Descriptor& d);
  // The status JSON's "metrics" object (guest_session_metrics.cpp, docs/tovm.md).
  std::string metrics_json();

  TovmOptions opts_;
  int epoll_fd_;
  std::uint32_t tag_;
  std::unique_ptr<StackBackend> backend_;
  rpc::IvshmemClient ivshmem_;
  rpc::RegionView view_;
  rpc::GuestChannel channel_;
  std::size_t peer_index_ = 0;
  bool peer_claimed_ = false;
  rpc::UniqueFd sidecar_listen_;
  std::map<std::uint64_t, rpc::UniqueFd> hello_pending_;  // sidecar connections before hello
  std::uint64_t next_conn_ = 1;
  std::vector<Lane> lanes_;
  SocketTable sockets_;
  rpc::ChunkLedger tx_held_;  // tx chunks the TOE holds (until their completion is queued)
  rpc::ChunkAllocator rx_alloc_;
  // Which socket (id and generation) each rx chunk is lent to. A kBufferReturn must name the
  // loan it ends: a return still queued in a lane when its socket was closed (and the chunk
  // reclaimed and lent again, perhaps to another process) must not end the new loan.
  struct RxLoan {
    static constexpr std::uint32_t kNone = UINT32_MAX;
    std::uint32_t socket = kNone;
    std::uint32_t generation = 0;
  };
  std::vector<RxLoan> rx_owner_;
  std::vector<std::uint32_t> paused_;       // sockets stopped for backpressure
  std::vector<std::uint32_t> paused_hint_;  // slots whose rx_paused hint is set
  std::vector<std::uint32_t> closing_;      // EOF on B seen this iteration
  std::vector<std::uint32_t> dying_lanes_;
  std::unique_ptr<LocalPlaceholders> local_ph_;  // B ends from the sidecar (process mode)
  std::unique_ptr<AgentPlaceholders> agent_ph_;  // B ends in the VM's agent (--vm-agent)
  rpc::PeerId agent_peer_ = 0;
  std::uint64_t agent_generation_ = 0;  // 0: no agent said hello (or it was closed)
  std::vector<std::uint32_t> zombies_;  // sockets with TSocket::zombie set
  std::chrono::steady_clock::time_point next_zombie_check_{};
  struct BufferDefaults {
    int domain = 0;
    int type = 0;
    int sndbuf = 0;
    int rcvbuf = 0;
    std::chrono::steady_clock::time_point read_at{};
  };
  BufferDefaults buffer_defaults_[4];  // AF_INET/AF_INET6 x SOCK_STREAM/SOCK_DGRAM
  SessionCounters counters_;
  std::chrono::steady_clock::time_point started_;
  std::unique_ptr<InspectionLink> inspect_;
  std::vector<std::byte> inspect_buf_;  // one incoming read, before its copy into the region
  std::unordered_map<std::uint64_t, std::uint32_t> inspect_ids_;  // stream id -> socket id
  std::vector<std::uint32_t> inspect_waiting_;  // sockets with held, stalled or waiting bytes
  std::vector<std::vector<std::byte>> spare_tx_;
  unsigned worker_index_ = 0;  // recycled TxBuffer storage (no malloc per send)
};

}  // namespace tosec::tovm
