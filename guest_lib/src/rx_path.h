// The guest (consumer) side of one socket's rx ring, and the futex lock that lets several guest
// processes (fork, SCM-less sharing) consume it in turn.
//
// Unlike SpscRing's consumer end, which keeps its index privately, RxRing reads and writes the
// shared tail under SocketSlot::rx_lock on every call: the consumer may be a different process
// each time. The TOE (producer) is trusted but every entry is still copied out and checked
// (chunk index and length inside the rx pool) before a byte is touched.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "tosec/rpc/buffer_pool.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/spsc_ring.h"

namespace tosec::guest {

// Process-shared futex mutex on SocketSlot::rx_lock: 0 free, else the holder's
// rpc::rx_lock_owner(lane), plus rpc::kRxLockWaiters once somebody waited. A holder that dies
// with the lock is freed by the TOE when it reclaims the lane (guest_channel.h); waiters wait in
// slices of kRxLockWaitSliceMs so they notice without a wake-up (where futexes do not work on
// the mapping, VM mode's BAR, they nap 100 us at a time instead).
inline constexpr int kRxLockWaitSliceMs = 50;
class RxLock {
 public:
  // `owner`: rpc::rx_lock_owner(our lane), never 0 and never with kRxLockWaiters.
  RxLock(std::atomic<std::uint32_t>& word, std::uint32_t owner);
  ~RxLock();
  RxLock(const RxLock&) = delete;
  RxLock& operator=(const RxLock&) = delete;

 private:
  std::atomic<std::uint32_t>& w_;
  std::uint32_t owner_;
};

struct RxRing {
  rpc::SocketSlot* slot = nullptr;
  rpc::RingShared* ring = nullptr;  // header of the socket's rx ring
  const rpc::RxEntry* entries = nullptr;
  std::uint32_t capacity = 0;
  const rpc::BufferPool* pool = nullptr;

  // Entries ready (0 if the producer index is inconsistent: treated as empty, see `broken`).
  std::uint32_t available() const;
  bool empty() const { return available() == 0; }
};

// The guest's view of socket `id`'s rx ring in `ch` (id < max_sockets, checked by the caller).
RxRing make_rx_ring(const rpc::GuestChannel& ch, std::uint32_t id);

struct RxConsumeResult {
  std::size_t copied = 0;     // bytes copied into the caller's buffers
  std::size_t dgram_len = 0;  // datagrams: full payload length (MSG_TRUNC)
  bool got_dgram = false;
  int error = 0;            // EPROTO: the ring or an entry was malformed
  rpc::SlotAddress from{};  // datagrams: source address
};

// Copies up to the iovecs' total out of `rx` (stream: across entries, resuming at
// slot->rx_offset; datagram: exactly one entry, the rest of it discarded unless `peek`).
// Without `peek`, consumed entries are released and their chunks passed to `give_back`.
// The caller holds the slot's RxLock.
RxConsumeResult rx_consume(const RxRing& rx, std::span<const iovec> iov, bool peek, bool dgram,
                           const std::function<void(std::uint32_t chunk)>& give_back);

// Bytes readable now (FIONREAD): stream: all entries minus rx_offset; datagram: head's payload.
std::size_t rx_readable(const RxRing& rx, bool dgram);

// Send credit of one socket in this process: bytes handed to the TOE and not yet completed,
// against a limit (SO_SNDBUF). Lock-free; many threads may send on one socket.
class TxCredit {
 public:
  // Reserves up to `want` bytes; returns how many (0: out of credit). Always grants at least
  // min(want, limit) when nothing is in flight, so a send larger than the limit progresses.
  std::size_t acquire(std::size_t want);
  void release(std::size_t n);
  std::size_t inflight() const { return inflight_.load(std::memory_order_acquire); }
  std::size_t limit() const { return limit_.load(std::memory_order_relaxed); }
  void set_limit(std::size_t l) { limit_.store(l, std::memory_order_relaxed); }
  void reset() { inflight_.store(0, std::memory_order_release); }

 private:
  std::atomic<std::size_t> inflight_{0};
  std::atomic<std::size_t> limit_{256 * 1024};
};

}  // namespace tosec::guest
