// Platform: this process's connection to the TOE (decision 0004), joined lazily on first use.
//
//   join: IvshmemClient -> RegionView::attach (retry while the TOE formats) ->
//         GuestChannel::attach_guest -> sidecar SOCK_SEQPACKET connect -> SidecarHello /
//         SidecarWelcome (our lane) -> lane rings.
//
// Lane: the request/completion ring pair of this process. Threads share it:
//  - submission under a process-local mutex (the req ring is single-producer);
//  - completion dispatch is leader/follower: one thread at a time consumes the cpl ring (and
//    sleeps on our doorbell vector when it is empty), files each completion under its request
//    id, and wakes the followers, which wait on a condition variable for their own id;
//  - kSend completions are consumed by whoever dispatches: they return the tx chunk to the
//    lane's allocator and the bytes to the socket's credit.
//  A dead TOE (sidecar hang-up) fails every pending and future call with ECONNRESET.
//
// Fork: the child must not touch the parent's lane. tosec_atfork_child() drops the inherited
// Platform (closing the child's copies of its fds) and the next call joins as a new peer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "fd_table.h"
#include "rx_path.h"
#include "tosec/rpc/buffer_pool.h"
#include "tosec/rpc/descriptor.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/ivshmem_client.h"
#include "tosec/rpc/notifier.h"
#include "tosec/rpc/region.h"
#include "tosec/rpc/spsc_ring.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::guest {

// Process-local state of one socket id (not in shared memory; survives fork, not exec).
struct SocketLocal {
  std::atomic<std::uint32_t> generation{0};  // the slot generation this state belongs to
  TxCredit credit;
  std::atomic<int> async_error{0};  // first error of an async kSend, reported once
  std::atomic<bool> reset_reported{false};
  std::atomic<bool> rd_shut{false};  // shutdown(SHUT_RD) done here: recv gives EOF
  std::atomic<std::int64_t> rcvtimeo_ns{-1};
  std::atomic<std::int64_t> sndtimeo_ns{-1};
  std::mutex opts_mu;
  struct Opt {
    int level, name;
    std::vector<unsigned char> value;
  };
  std::vector<Opt> opts;  // remembered setsockopts, replayed on conversion to a kernel socket
};

class Platform {
 public:
  // This process's platform, joining on first call; nullptr if it is not reachable (then every
  // call passes through to the kernel). Never blocks longer than the join timeouts.
  static Platform* get();
  // The platform if already joined (no join attempt).
  static Platform* current();
  // Fork child: forget the parent's platform (closing our copies of its fds).
  static void drop_after_fork();
  // pthread_atfork prepare/parent: hold the join and lane locks across fork().
  static void fork_prepare();
  static void fork_parent();

  const rpc::GuestChannel& channel() const { return channel_; }
  rpc::SocketSlot* slot(std::uint32_t id) const { return channel_.slot(id); }
  RxRing rx_ring(std::uint32_t id) const;
  SocketLocal& local(std::uint32_t id) { return locals()[id]; }
  std::uint32_t max_sockets() const { return channel_.config().max_sockets; }
  bool dead() const { return dead_.load(std::memory_order_acquire); }
  // dead(), after polling the sidecar for a hang-up at most every few ms (async sends never
  // wait on the lane, so they would not notice a dead TOE otherwise).
  bool check_dead();
  int sidecar_fd() const { return sidecar_.get(); }
  // What this process writes into a SocketSlot::rx_lock it holds (our lane: guest_channel.h).
  std::uint32_t rx_lock_owner() const { return rpc::rx_lock_owner(lane_); }

  // ---- lane ----
  // Submits `d` (request_id assigned here) and waits for its completion. For kSocket/kAccept,
  // `b_end` (>= 0) is sent on the sidecar first, tagged with the same request id.
  rpc::Result<rpc::Descriptor> call(rpc::Descriptor d, int b_end = -1);
  // Submits a request that gets no completion the caller waits for (kKick, kBufferReturn,
  // kSend: its completion is consumed by dispatch).
  rpc::Status post(rpc::Descriptor d);
  // As post(), but the TOE's doorbell is rung only if `*wake_if` is nonzero after the enqueue
  // (kBufferReturn: SocketSlot::rx_paused, checked after a seq_cst fence).
  rpc::Status post_lazy(rpc::Descriptor d, const std::atomic<std::uint32_t>* wake_if);
  // A tx chunk of our lane (absolute pool index), waiting for completions if all are lent.
  rpc::Result<std::uint32_t> tx_alloc(bool wait);
  void tx_free(std::uint32_t chunk);
  std::span<std::byte> tx_chunk(std::uint32_t chunk) const {
    return channel_.tx_pool().chunk(chunk);
  }
  // Sends `len` bytes already in `chunk` on socket `id` asynchronously (credit already taken).
  rpc::Status send_async(std::uint32_t id, std::uint32_t chunk, std::uint32_t len,
                         std::uint64_t flags, std::uint32_t addr_len);
  // Consumes completions available now (no waiting).
  void reap();
  std::uint32_t chunk_size() const { return channel_.config().chunk_size; }

  ~Platform();

 private:
  Platform() = default;
  static std::unique_ptr<Platform> join();
  SocketLocal* locals() { return locals_; }

  rpc::Status enqueue(rpc::Descriptor& d, const std::atomic<std::uint32_t>* wake_if = nullptr);
  // Leader/follower: waits until pred() (called with cpl_mu_ held) is true.
  template <class Pred>
  rpc::Status wait_until(std::unique_lock<std::mutex>& lk, Pred pred);
  // Consumes up to a burst of completions; cpl_mu_ must NOT be held. Returns count.
  std::uint32_t drain_cpl();
  void dispatch(const rpc::Descriptor& c);  // cpl_mu_ held
  void mark_dead(const char* why);

  std::unique_ptr<rpc::IvshmemClient> ivshmem_;
  rpc::RegionView view_;
  rpc::GuestChannel channel_;
  rpc::UniqueFd sidecar_;
  std::uint32_t lane_ = 0;
  rpc::PeerId toe_peer_ = 0;
  rpc::Vector toe_vector_ = 0;
  rpc::Vector guest_vector_ = 0;
  SocketLocal* locals_ = nullptr;  // max_sockets entries, process lifetime

  std::mutex submit_mu_;
  rpc::TypedRing<rpc::Descriptor> req_;
  std::uint64_t next_id_ = 1;

  std::mutex cpl_mu_;
  std::condition_variable cpl_cv_;
  bool leader_ = false;
  rpc::TypedRing<rpc::Descriptor> cpl_;
  // Calls in flight are few (one per thread): linear vectors beat hash maps here.
  std::vector<std::uint64_t> waiting_;
  std::vector<rpc::Descriptor> done_;
  bool is_done(std::uint64_t id) const;
  void forget_call(std::uint64_t id);
  rpc::ChunkAllocator tx_;  // local indices [0, tx_chunks_per_lane)
  struct InFlight {
    std::uint32_t socket;
    std::uint32_t length;
  };
  std::vector<InFlight> tx_owner_;  // per local chunk
  std::unique_ptr<rpc::DoorbellWaiter> doorbell_;
  std::unique_ptr<rpc::Waiter> waiter_;

  std::atomic<bool> dead_{false};
  std::atomic<std::int64_t> last_alive_check_ns_{0};
  std::mutex ivshmem_mu_;  // IvshmemClient::process_events is single-threaded
};

// Sets errno from a negative result and returns -1, or returns the value.
inline long ret_errno(long r) {
  if (r < 0) {
    errno = static_cast<int>(-r);
    return -1;
  }
  return r;
}

}  // namespace tosec::guest
