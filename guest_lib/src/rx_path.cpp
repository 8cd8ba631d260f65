#include "rx_path.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tosec::guest {

namespace {

// Shared futexes (not FUTEX_PRIVATE_FLAG): the word lives in memory several processes map.
// Waits until the word may have changed from `expected`, at most timeout_ms. Where the kernel
// cannot key a futex on the mapping (EFAULT: VM mode maps the ivshmem BAR, a PFN mapping) it
// naps 100 us instead: a holder keeps the lock for microseconds, and nothing can wake us there.
void futex_wait(std::atomic<std::uint32_t>& w, std::uint32_t expected, int timeout_ms) {
  const timespec ts{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1'000'000};
  if (syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAIT, expected, &ts, nullptr,
              0) == 0 ||
      errno == EAGAIN || errno == ETIMEDOUT || errno == EINTR) {
    return;
  }
  const timespec nap{0, 100'000};
  nanosleep(&nap, nullptr);
}

}  // namespace

// Drepper's "mutex 3" with the owner in the word: once contended, whoever takes the lock keeps
// the waiters bit (there may be others), and unlock wakes one if it was set.
RxLock::RxLock(std::atomic<std::uint32_t>& word, std::uint32_t owner) : w_(word), owner_(owner) {
  std::uint32_t c = 0;
  if (w_.compare_exchange_strong(c, owner, std::memory_order_acquire)) return;
  for (;;) {
    if (c == 0) {
      if (w_.compare_exchange_weak(c, owner | rpc::kRxLockWaiters, std::memory_order_acquire)) {
        return;
      }
      continue;  // c holds the value seen
    }
    if ((c & rpc::kRxLockWaiters) == 0 &&
        !w_.compare_exchange_weak(c, c | rpc::kRxLockWaiters, std::memory_order_relaxed)) {
      continue;
    }
    // A timeout is no error: the holder may be gone and the TOE have freed the word.
    futex_wait(w_, c | rpc::kRxLockWaiters, kRxLockWaitSliceMs);
    c = w_.load(std::memory_order_relaxed);
  }
}

// Only our own lock is released: if the TOE freed it (it took our lane for a dead process) and
// somebody else holds it now, theirs is left alone.
RxLock::~RxLock() {
  if ((rpc::rx_lock_release(w_, owner_) & rpc::kRxLockWaiters) != 0) rpc::rx_lock_wake(w_, 1);
}

RxRing make_rx_ring(const rpc::GuestChannel& ch, std::uint32_t id) {
  RxRing r;
  r.slot = ch.slot(id);
  auto* base = reinterpret_cast<std::byte*>(r.slot) + sizeof(rpc::SocketSlot);
  r.ring = reinterpret_cast<rpc::RingShared*>(base);
  r.entries = reinterpret_cast<const rpc::RxEntry*>(base + rpc::kRingHeaderSize);
  r.capacity = ch.config().socket_rx_entries;
  r.pool = &ch.rx_pool();
  return r;
}

std::uint32_t RxRing::available() const {
  const std::uint32_t head = ring->head.load(std::memory_order_acquire);
  const std::uint32_t tail = ring->tail.load(std::memory_order_relaxed);
  const std::uint32_t n = head - tail;
  return n <= capacity ? n : 0;
}

RxConsumeResult rx_consume(const RxRing& rx, std::span<const iovec> iov, bool peek, bool dgram,
                           const std::function<void(std::uint32_t)>& give_back) {
  RxConsumeResult res;
  std::uint32_t tail = rx.ring->tail.load(std::memory_order_relaxed);
  const std::uint32_t avail = rx.available();
  std::uint32_t offset = rx.slot->rx_offset;
  std::size_t vi = 0;    // current iovec
  std::size_t voff = 0;  // offset in it
  auto copy_out = [&](const std::byte* src, std::size_t n) {
    std::size_t done = 0;
    while (done < n && vi < iov.size()) {
      const std::size_t room = iov[vi].iov_len - voff;
      const std::size_t k = std::min(room, n - done);
      std::memcpy(static_cast<std::byte*>(iov[vi].iov_base) + voff, src + done, k);
      done += k;
      voff += k;
      if (voff == iov[vi].iov_len) {
        ++vi;
        voff = 0;
      }
    }
    return done;
  };
  auto room_left = [&] { return vi < iov.size(); };
  // Skip leading empty iovecs so room_left() is accurate.
  while (vi < iov.size() && iov[vi].iov_len == 0) ++vi;

  // Chunks are given back only after the tail moved past their entries: the TOE resumes a
  // socket paused on a full rx ring when a chunk comes back, and must then see the room.
  constexpr std::uint32_t kMaxPerCall = 256;
  std::uint32_t returned[kMaxPerCall];
  std::uint32_t consumed = 0;
  for (std::uint32_t i = 0; i < avail && consumed < kMaxPerCall; ++i) {
    rpc::RxEntry e{};
    std::memcpy(&e, &rx.entries[(tail + i) & (rx.capacity - 1)], sizeof e);  // copy, then check
    if (!rx.pool->valid({e.chunk, 0, e.length}) || e.length == 0) {
      res.error = EPROTO;
      break;
    }
    const std::byte* data = rx.pool->chunk(e.chunk).data();
    if (dgram) {
      std::uint32_t hdr = 0;
      if (e.length >= rpc::kDgramRxHeader) {
        std::memcpy(&res.from, data, sizeof res.from);
        if (res.from.length > sizeof res.from.bytes) res.from.length = 0;
        hdr = rpc::kDgramRxHeader;
      }
      res.dgram_len = e.length - hdr;
      res.got_dgram = true;
      res.copied = copy_out(data + hdr, res.dgram_len);
      if (!peek) returned[consumed++] = e.chunk;
      break;
    }
    if (offset > e.length) offset = 0;  // stale offset (never from a correct peer)
    if (!room_left()) break;
    const std::size_t n = copy_out(data + offset, e.length - offset);
    res.copied += n;
    if (peek) {
      offset = 0;  // a peek past the head entry reads the following ones from their start
      continue;
    }
    if (offset + n == e.length) {
      returned[consumed++] = e.chunk;
      offset = 0;
    } else {
      offset += static_cast<std::uint32_t>(n);
      break;
    }
  }
  if (!peek) {
    rx.slot->rx_offset = offset;
    if (consumed > 0) rx.ring->tail.store(tail + consumed, std::memory_order_release);
    for (std::uint32_t i = 0; i < consumed; ++i) give_back(returned[i]);
  }
  (void)tail;
  return res;
}

std::size_t rx_readable(const RxRing& rx, bool dgram) {
  const std::uint32_t tail = rx.ring->tail.load(std::memory_order_relaxed);
  const std::uint32_t avail = rx.available();
  std::size_t total = 0;
  for (std::uint32_t i = 0; i < avail; ++i) {
    rpc::RxEntry e{};
    std::memcpy(&e, &rx.entries[(tail + i) & (rx.capacity - 1)], sizeof e);
    if (dgram) return e.length >= rpc::kDgramRxHeader ? e.length - rpc::kDgramRxHeader : e.length;
    total += e.length;
    if (i == 0) total -= std::min<std::size_t>(rx.slot->rx_offset, e.length);
  }
  return total;
}

std::size_t TxCredit::acquire(std::size_t want) {
  std::size_t cur = inflight_.load(std::memory_order_relaxed);
  for (;;) {
    const std::size_t lim = limit_.load(std::memory_order_relaxed);
    if (cur >= lim) return 0;
    const std::size_t grant = std::min(want, lim - cur);
    if (inflight_.compare_exchange_weak(cur, cur + grant, std::memory_order_acq_rel)) return grant;
  }
}

void TxCredit::release(std::size_t n) {
  std::size_t cur = inflight_.load(std::memory_order_relaxed);
  for (;;) {
    const std::size_t next = n > cur ? 0 : cur - n;  // never underflow (reset after fork)
    if (inflight_.compare_exchange_weak(cur, next, std::memory_order_acq_rel)) return;
  }
}

}  // namespace tosec::guest
