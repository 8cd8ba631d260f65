// The guest channel: how a guest's processes and the TOE share one guest region.
//
// Read docs/decisions/0004-offloaded-sockets.md first; this header is its wire contract.
//
// Region areas (built by guest_region_layout(), formatted by the TOE, attached by the shim):
//
//   "geometry"  GuestGeometry: the parameters below, published by the TOE (the shim checks
//               them against the area table; the TOE never re-reads them)
//   "lanes"     lanes x { req ring, cpl ring }: one lane per guest *process* (SPSC rings; the
//               threads of a process share its lane under a process-local mutex)
//   "sockets"   max_sockets x SocketSlot: per-socket state the TOE publishes, plus the
//               socket's rx ring (TOE produces RxEntry, guest consumes)
//   "pool.tx"   lanes x tx_chunks_per_lane chunks: lane i owns chunks
//               [i * tx_chunks_per_lane, (i + 1) * tx_chunks_per_lane) and allocates them
//               process-locally; the TOE borrows one per kSend and returns it in a completion
//   "pool.rx"   rx_chunks chunks: the TOE allocates, fills and lends them to the guest through
//               a socket's rx ring; the guest gives each back with kBufferReturn
//
// Placeholders and readiness (the core idea, see the decision record): every offloaded socket is
// backed in the guest process by end A of a socketpair(AF_UNIX, SOCK_STREAM); the TOE holds end
// B. The kernel then provides fd numbering, CLOEXEC, dup/fork/exec sharing and refcounted close
// (the TOE sees EOF on B when the last guest reference to A is closed, in any process), and
// poll/select/epoll on A work natively, mixed with kernel fds:
//   - A readable  <=> the TOE wrote a byte into B ("rx ring non-empty, or EOF, or error, or a
//     connection to accept"). The TOE writes one byte per batch of rx entries it pushes (so an
//     EPOLLET waiter wakes once per arrival, as on a kernel socket) and sets rx_signalled; the
//     guest reads all the bytes out of A when it has consumed everything (rearm protocol). On
//     the peer's FIN the TOE also shuts B's send side, so A reports POLLRDHUP and reads 0.
//     Two refinements (decision 0013) spare this mirror's system calls while a reader waits:
//     (1) a blocked reader spinning on shared memory sets rx_signalled to kRxClaimed; the TOE
//     then writes no byte (the spinner watches the ring itself), and the reader resets it to 0
//     and re-checks before it sleeps on A (Dekker). A reader that leaves data in the ring after
//     a claimed arrival kicks the TOE (kick 1), so A turns readable for other waiters. (2) The
//     TOE counts the bytes it writes (rx_bytes_signalled, counted before the write) and the
//     guest the bytes it drains (rx_bytes_drained, under rx_lock): equal counts mean A holds
//     none, and the drain skips its SIOCINQ and recv.
//   - A writable  <=> A's send buffer is not full. The guest fills it with junk to make A
//     unwritable (socket connecting, or send credit exhausted) and sets tx_blocked; the TOE
//     drains B (reads and discards) when the connection is established/failed or send credit
//     comes back, and clears tx_blocked.
//   - A's sentinel: the guest writes one byte kPlaceholderSentinel into A when it creates the
//     placeholder, and ends every junk fill with another one (a separate 1-byte send, so it is
//     a whole skb of its own). The TOE drains B up to, not including, a sentinel that is the
//     last byte queued (else it drains everything). B therefore holds unread bytes whenever the
//     guest's fills allow it, so that the TOE closing B after a reset or a refused connect
//     (instead of a guest close) makes the kernel set ECONNRESET on A: POLLERR|POLLHUP, as on a
//     TCP socket. The TOE then learns of the guest's last close of A through sock_diag, no
//     longer through EOF on B (docs/tovm.md, "Dead connections"). Either side without this
//     rule still interoperates (A then shows POLLHUP without POLLERR, or B is drained fully).
//   Both flags use the Dekker pattern of notifier.h; a guest that loses the race asks the TOE to
//   re-signal with a kKick request. Spurious readiness is allowed (the call then returns EAGAIN);
//   missing readiness is not.
//
// Trust: everything here is guest-writable. The TOE keeps its own authoritative socket state
// and only *publishes* into SocketSlot; it reads back only the guest-owned fields named below,
// each validated (rx ring indices through SpscRing; flags are hints that can only cost the guest
// its own progress).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

#include "tosec/rpc/buffer_pool.h"
#include "tosec/rpc/descriptor.h"
#include "tosec/rpc/region.h"
#include "tosec/rpc/spsc_ring.h"
#include "tosec/rpc/status.h"

namespace tosec::rpc {

// 2: kRxClaimed, readiness counts; 3: rx_lock names its owner's lane (kRxLockWaiters)
inline constexpr std::uint32_t kGuestChannelVersion = 3;

struct GuestChannelConfig {
  std::uint32_t lanes = 16;               // guest processes served at once
  std::uint32_t ring_slots = 256;         // per lane, per direction (power of two)
  std::uint32_t max_sockets = 2048;       // socket ids are [0, max_sockets)
  std::uint32_t socket_rx_entries = 64;   // rx ring entries per socket (power of two)
  std::uint32_t chunk_size = 16384;       // tx and rx chunk size (multiple of 64)
  std::uint32_t tx_chunks_per_lane = 64;  // send credit of one process: 1 MiB by default
  std::uint32_t rx_chunks = 2048;         // receive memory of the guest: 32 MiB by default
};

// Published by the TOE in area "geometry" (one cache line).
struct GuestGeometry {
  std::uint32_t version;
  std::uint32_t lanes;
  std::uint32_t ring_slots;
  std::uint32_t max_sockets;
  std::uint32_t socket_rx_entries;
  std::uint32_t chunk_size;
  std::uint32_t tx_chunks_per_lane;
  std::uint32_t rx_chunks;
  std::uint8_t pad[32];
};
static_assert(sizeof(GuestGeometry) == 64);

// One entry of a socket's rx ring: bytes the TOE received for the guest, in an rx chunk that is
// now lent to the guest. length == 0 never appears (EOF is SocketSlot::events & kEvPeerClosed).
// SOCK_DGRAM sockets: one entry is one datagram; its chunk starts with a SlotAddress (the
// source, kDgramRxHeader bytes) followed by the payload, and length counts both.
struct RxEntry {
  std::uint32_t chunk;
  std::uint32_t length;
};
static_assert(sizeof(RxEntry) == 8);

enum class SocketState : std::uint32_t {
  kFree = 0,
  kOpen = 1,  // created, not connected or listening
  kConnecting = 2,
  kConnected = 3,
  kListening = 4,
  kClosing = 5,  // last reference gone, TOE flushing
};

// The last byte the TOE leaves in B (see "A's sentinel" above); junk bytes are never this value.
inline constexpr char kPlaceholderSentinel = 'S';

// SocketSlot::rx_signalled while a blocked reader spins on the rx ring: write no readiness byte.
inline constexpr std::uint32_t kRxClaimed = 2;

// SocketSlot::rx_lock, the futex word of the guest processes that share a socket: 0 free, else
// the holder's lane + 1 (bits 0-30), with kRxLockWaiters set once a process waited for it.
// Naming the lane lets the TOE free a lock whose holder died with it (docs/guest-lib.md, fork):
// when it reclaims a lane it clears every rx_lock that names it (and resets the socket's
// rx_signalled, which the dead reader may have left claimed). Waiters wait with a timeout, so
// they see that without a wake-up (a TOE in another kernel, VM mode, cannot give one). Unlock
// clears the word only while it still names the unlocking lane.
inline constexpr std::uint32_t kRxLockWaiters = 1U << 31;
constexpr std::uint32_t rx_lock_owner(std::uint32_t lane) { return lane + 1; }
// Clears an rx_lock word while it names `owner` (retrying over a waiter that sets
// kRxLockWaiters meanwhile). Returns the value cleared, or 0 if the word names another holder or
// none. The guest's unlock and the TOE's release of a dead lane's locks both go through here.
inline std::uint32_t rx_lock_release(std::atomic<std::uint32_t>& word, std::uint32_t owner) {
  std::uint32_t seen = word.load(std::memory_order_relaxed);
  while ((seen & ~kRxLockWaiters) == owner) {
    if (word.compare_exchange_weak(seen, 0, std::memory_order_release)) return seen;
  }
  return 0;
}
// Wakes up to `count` processes sleeping on an rx_lock word (a shared futex: several processes
// map it). Harmless where none sleeps, or where the mapping cannot carry a futex.
void rx_lock_wake(std::atomic<std::uint32_t>& word, int count);

// SocketSlot::events bits (published by the TOE).
inline constexpr std::uint32_t kEvPeerClosed = 1U
                                               << 0;    // FIN received: recv returns 0 when drained
inline constexpr std::uint32_t kEvError = 1U << 1;      // so_error holds a pending error
inline constexpr std::uint32_t kEvWriteShut = 1U << 2;  // shutdown(SHUT_WR) done: send gives EPIPE
inline constexpr std::uint32_t kEvReset = 1U << 3;      // connection reset: send/recv ECONNRESET

// Socket address as published (sockaddr_in or sockaddr_in6 bytes, little room to spare).
struct SlotAddress {
  std::uint16_t length;  // 0 = none yet
  std::uint8_t bytes[30];
};
static_assert(sizeof(SlotAddress) == 32);
// Bytes in front of a datagram's payload in its rx chunk (see RxEntry).
inline constexpr std::uint32_t kDgramRxHeader = sizeof(SlotAddress);

struct SocketSlot {
  // ---- line 0: published by the TOE ----
  alignas(kCacheLine) std::atomic<std::uint32_t> generation;  // bumped at every (re)use
  std::atomic<SocketState> state;
  std::atomic<std::uint32_t> events;        // kEv* bits
  std::atomic<std::int32_t> so_error;       // errno value, valid when error_seq changes
  std::atomic<std::uint32_t> error_seq;     // bumped with each new so_error
  std::atomic<std::uint32_t> accept_ready;  // listeners: accepted connections waiting in the TOE
  std::uint16_t family;                     // AF_INET / AF_INET6
  std::uint16_t type;                       // SOCK_STREAM / SOCK_DGRAM
  std::int32_t protocol;
  // Nonzero while the TOE has stopped reading this socket for want of rx ring room or rx
  // chunks. The guest rings the TOE's doorbell after a kBufferReturn only when it sees this set
  // (seq_cst fence after enqueuing the return); the TOE sets it, fences, and re-checks its
  // request rings before sleeping, so no return is stranded. Saves one wake-up a round trip.
  std::atomic<std::uint32_t> rx_paused;
  // SO_SNDBUF / SO_RCVBUF as getsockopt reports them, published by the TOE while the socket is
  // kOpen (the kernel autotunes them once connected): the shim answers getsockopt from here
  // then, without a round trip. 0: unknown, ask the TOE.
  std::atomic<std::int32_t> sndbuf;
  std::atomic<std::int32_t> rcvbuf;
  // Readiness bytes the TOE has written (or is about to write) into B, ever (wraps).
  std::atomic<std::uint32_t> rx_bytes_signalled;
  // ---- line 1: addresses, published by the TOE ----
  alignas(kCacheLine) SlotAddress local;
  SlotAddress peer;
  // ---- line 2: guest-owned (the TOE reads rx_signalled / tx_blocked as hints only) ----
  alignas(kCacheLine) std::atomic<std::uint32_t> rx_signalled;  // 1: a byte is in A; or kRxClaimed
  std::atomic<std::uint32_t> tx_blocked;   // guest filled A (set after the fill); TOE drains B
                                           // only when it takes this set (exchange(0))
  std::atomic<std::uint32_t> rx_lock;      // futex word of the processes sharing this socket
                                           // (rx_lock_owner, kRxLockWaiters)
  std::uint32_t rx_offset;                 // bytes of the head rx entry already consumed
  std::atomic<std::uint32_t> nonblock;     // O_NONBLOCK of A's open file description (mirror)
  std::atomic<std::uint32_t> tx_inflight;  // bytes sent by the guest, not yet completed
  std::uint32_t guest_error_seq;           // last error_seq the guest consumed (SO_ERROR)
  std::uint32_t rx_bytes_drained;          // readiness bytes read out of A (under rx_lock)
  std::uint64_t placeholder_ino;           // st_ino of end A: exec'd shims find sockets by it
  std::uint64_t placeholder_dev;
  std::uint8_t pad2[8];
  // ---- line 3..: the rx ring (RingShared header, then socket_rx_entries RxEntry) follows ----
};
static_assert(sizeof(SocketSlot) == 3 * kCacheLine);

// Bytes one socket occupies in area "sockets": the slot, then its rx ring area.
// Rounded up to a cache line: every SocketSlot must be 64-byte aligned (fewer than 8 rx entries
// would otherwise misalign the next slot).
constexpr std::size_t socket_stride(std::uint32_t rx_entries) {
  const std::size_t raw =
      sizeof(SocketSlot) + kRingHeaderSize + std::size_t{rx_entries} * sizeof(RxEntry);
  return (raw + kCacheLine - 1) / kCacheLine * kCacheLine;
}
// Bytes one lane occupies in area "lanes": req ring area then cpl ring area.
constexpr std::size_t lane_stride(std::uint32_t ring_slots) {
  return 2 * (kRingHeaderSize + std::size_t{ring_slots} * sizeof(Descriptor));
}

// The layout of a guest region for `cfg` (validated by format()).
RegionLayout guest_region_layout(const GuestChannelConfig& cfg);

// Formats every lane ring and socket rx ring and publishes GuestGeometry. TOE only, after
// RegionLayout::format().
Status format_guest_channel(const RegionView& view, const GuestChannelConfig& cfg);

// A validated view of a guest region's channel areas. Geometry comes from `cfg` on the TOE side
// (its own config) and from the published GuestGeometry on the guest side (checked against the
// area sizes, so a mismatch is an error, never an out-of-bounds access).
class GuestChannel {
 public:
  static Result<GuestChannel> attach_toe(const RegionView& view, const GuestChannelConfig& cfg);
  static Result<GuestChannel> attach_guest(const RegionView& view);

  const GuestChannelConfig& config() const { return cfg_; }
  // Lane rings (guest: produce req, consume cpl; TOE: the reverse).
  Result<SpscRing> lane_ring(std::uint32_t lane, bool request, RingEnd end) const;
  // Socket slot and its rx ring (TOE: producer; guest: consumer). id < max_sockets (checked).
  SocketSlot* slot(std::uint32_t socket) const;
  Result<SpscRing> rx_ring(std::uint32_t socket, RingEnd end) const;
  const BufferPool& tx_pool() const { return tx_; }
  const BufferPool& rx_pool() const { return rx_; }
  // Chunks of the tx pool that lane `lane` owns: [first, first + count).
  std::uint32_t lane_tx_first(std::uint32_t lane) const { return lane * cfg_.tx_chunks_per_lane; }

 private:
  friend Status format_guest_channel(const RegionView& view, const GuestChannelConfig& cfg);
  static Result<GuestChannel> attach(const RegionView& view, const GuestChannelConfig& cfg);
  GuestChannelConfig cfg_;
  std::span<std::byte> lanes_;
  std::span<std::byte> sockets_;
  BufferPool tx_;
  BufferPool rx_;
};

// ---- descriptor argument conventions (see descriptor.h for the layout) ----------------------
//
// request (guest -> TOE, lane req ring)           completion (TOE -> guest, lane cpl ring)
// kSocket   arg0 = domain | type << 16 (type     result = socket id, or -errno
//           without SOCK_NONBLOCK/CLOEXEC),
//           arg1 = protocol; request_id matches
//           the SidecarFd carrying end B
// kBind     tx chunk holds the sockaddr           result = 0 / -errno; slot.local published
// kListen   arg0 = backlog                        result = 0 / -errno
// kAccept   socket = listener, request_id         result = new socket id / -EAGAIN / -errno;
//           matches the SidecarFd carrying the    new slot's addresses published first
//           new socket's end B
// kConnect  tx chunk holds the sockaddr           result = 0 (connected), -EINPROGRESS (the
//                                                 TOE connects asynchronously; completion of the
//                                                 connect is published in the slot and A made
//                                                 writable if the guest set tx_blocked), or
//                                                 -errno
// kSend     tx chunk + offset + length; arg0 =    result = bytes accepted (always all, or
//           MSG_* flags (MSG_MORE, MSG_OOB)       -errno); the chunk is returned by this
//           socket type DGRAM: arg1 != 0 means    completion (chunk field echoes it)
//           the first arg1 bytes of the chunk
//           are a sockaddr (sendto)
// kShutdown arg0 = SHUT_RD / SHUT_WR / SHUT_RDWR  result = 0 / -errno
// kSetsockopt arg0 = level << 32 | optname, tx    result = 0 / -errno; none at all when
//           chunk holds the value; or pool kNone,  flags has kDescFlagNoReply (the guest posts
//           length <= 8 and the value inline in    an option that cannot fail and goes on;
//           arg1 (its first `length` bytes)        the TOE counts and logs a failure)
// kGetsockopt arg0 = level << 32 | optname        result = value length / -errno; arg0, arg1 =
//                                                 first 16 bytes of the value
// kBufferReturn socket, arg0 = socket generation, no completion (one that names a socket or
//           pool = kRx, chunk = rx chunk          generation the chunk is not lent to is
//                                                 ignored: it may have sat in the lane while
//                                                 the socket closed and the chunk moved on)
// kKick     socket; arg0 = 1 re-signal readable,  no completion
//           2 re-check writable
//
// Every completion carries the request's op and request_id. kSend completions may be batched.

inline constexpr std::uint16_t kOpKick = static_cast<std::uint16_t>(Op::kEvent) + 1;  // 15

// ---- sidecar (process mode): the one thing shared memory cannot carry is an fd --------------
//
// The TOE listens on a Unix SOCK_SEQPACKET socket ($TOSEC_TOE_SOCKET). Each guest process
// connects once (after fork the child connects anew), sends SidecarHello and gets
// SidecarWelcome with its lane. Then, for each socket()/accept(), it sends a SidecarFd with end B
// of the new placeholder (SCM_RIGHTS) *before* the matching descriptor goes on the lane's
// request ring. The connection closing tells the TOE the process is gone: its lane is reclaimed.
// (In VM mode the guest cannot pass fds to the TOVM: an in-guest agent holds the B ends instead;
// see the VM-mode issue.)

inline constexpr std::uint32_t kSidecarMagic = 0x54'53'43'53;  // "SCST"

struct SidecarHello {
  std::uint32_t magic;
  std::uint32_t version;  // kGuestChannelVersion
  std::uint32_t pid;
  std::uint16_t ivshmem_peer;  // our peer id from the ivshmem server (doorbells to wake us)
  std::uint16_t reserved;
};

struct SidecarWelcome {
  std::uint32_t magic;
  std::int32_t status;  // 0, or -errno (e.g. -EBUSY: no free lane)
  std::uint32_t lane;
  std::uint16_t toe_peer;      // ivshmem peer id of the TOE ...
  std::uint16_t toe_vector;    // ... and the vector to ring after enqueuing requests
  std::uint16_t guest_vector;  // the vector of ours the TOE rings after completions
  std::uint16_t reserved[3];
};

struct SidecarFd {
  std::uint32_t magic;
  std::uint32_t reserved;
  std::uint64_t request_id;  // the kSocket / kAccept request this end B belongs to
};

}  // namespace tosec::rpc
