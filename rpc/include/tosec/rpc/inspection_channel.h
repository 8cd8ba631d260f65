// The inspection channel: how a TOVM's TOE and its security VMs (SVMs) share one inspection
// region. This header is its wire contract; docs/svm.md draws it and
// docs/decisions/0006-inspection-chains.md says why it looks like this.
//
// Region areas (built by inspection_region_layout(), formatted by the TOE, attached by SVMs;
// a guest never maps this region):
//
//   "geometry"  InspectionGeometry: the parameters below, published by the TOE (SVMs check them
//               against the area table; the TOE never re-reads them)
//   "nodes"     nodes x NodeSlot: node 0 is the TOE, node i (1..nodes-1) is SVM instance i.
//               Each node writes only its own slot: where to ring it (ivshmem peer, vector), an
//               incarnation bumped at every (re)attach, and a heartbeat the TOE's deadline check
//               reads
//   "mesh"      nodes x nodes SPSC rings of InspectDesc, ring[from][to] (the diagonal is unused):
//               exactly one producer and one consumer each. TOE -> SVM carries payloads and
//               stream ends; SVM -> SVM carries direct hand-offs; SVM -> TOE carries verdicts
//   "control"   per SVM node i two control rings (ControlRing framing): ctl[i].down (TOE -> SVM:
//               StreamTableUpdate, ChainUpdate) and ctl[i].up (SVM -> TOE: alerts of blocks,
//               stats). Node 0's pair is unused
//   "pool"      chunks x chunk_size payload chunks. Only the TOE allocates and frees them; SVMs
//               read payloads in place and never write them
//
// Trust: every node is trusted infrastructure, but a bug in one must not crash another, so
// every descriptor is copied out of its slot and validated (kind, node ids, step, chunk bounds)
// before use; a bad one is counted and dropped with an error, never dereferenced.
//
// Notification: a node waits on one doorbell vector (its NodeSlot's peer/vector) with the
// notifier's Waiter over the consumer_sleeping flags of all its input rings; producers of a ring
// ring its consumer only when that flag is set (notifier.h). Control messages are rare: their
// producer always rings after writing one.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tosec/rpc/buffer_pool.h"
#include "tosec/rpc/control_ring.h"
#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/region.h"
#include "tosec/rpc/spsc_ring.h"
#include "tosec/rpc/status.h"

namespace tosec::rpc {

inline constexpr std::uint32_t kInspectionChannelVersion = 1;
inline constexpr std::uint32_t kMaxInspectionNodes = 16;  // the TOE + up to 15 SVM instances
inline constexpr std::uint16_t kToeNode = 0;

struct InspectionConfig {
  std::uint32_t nodes = 4;              // the TOE + (nodes - 1) SVM instances, in [2, 16]
  std::uint32_t ring_slots = 1024;      // per mesh ring (power of two, >= 8)
  std::uint32_t chunk_size = 16384;     // payload chunk size (multiple of 64)
  std::uint32_t chunks = 1024;          // payload chunks in the pool
  std::uint32_t control_bytes = 65536;  // per control ring (power of two)
};

// Published by the TOE in area "geometry" (one cache line).
struct InspectionGeometry {
  std::uint32_t version;
  std::uint32_t nodes;
  std::uint32_t ring_slots;
  std::uint32_t chunk_size;
  std::uint32_t chunks;
  std::uint32_t control_bytes;
  std::uint8_t pad[40];
};
static_assert(sizeof(InspectionGeometry) == 64);

enum class NodeState : std::uint32_t {
  kAbsent = 0,
  kOnline = 1,   // attached, consuming its rings
  kLeaving = 2,  // clean shutdown in progress
};

// One node's self-description, written only by that node (two cache lines).
struct NodeSlot {
  alignas(kCacheLine) std::atomic<NodeState> state;
  std::atomic<std::uint32_t> incarnation;  // bumped by the node at every attach
  std::atomic<std::uint32_t> doorbell;     // ivshmem peer << 16 | vector, published before kOnline
  std::uint32_t pid;
  // CLOCK_MONOTONIC ns (system-wide, so comparable across processes of one host): the node's
  // main loop was alive at this time.
  std::atomic<std::uint64_t> heartbeat_ns;
  // CLOCK_MONOTONIC ns since which the oldest unfinished payload has been in an engine; 0 when
  // idle. Tells a stuck engine from a quiet one.
  std::atomic<std::uint64_t> busy_since_ns;
  char name[16];
  std::uint8_t pad0[8];
  alignas(kCacheLine) std::uint8_t reserved[kCacheLine];
};
static_assert(sizeof(NodeSlot) == 2 * kCacheLine);
static_assert(std::atomic<NodeState>::is_always_lock_free);

enum class InspectKind : std::uint8_t {
  kPayload = 1,    // bytes to inspect (chunk, offset, length), travelling along the chain
  kVerdict = 2,    // an SVM's verdict on a payload (token), to the TOE
  kStreamEnd = 3,  // TOE -> SVM: the stream ended, run finish() and forget it;
                   // SVM -> TOE: finish() found something (action says what)
};

enum class InspectAction : std::uint8_t { kPass = 0, kAlert = 1, kBlock = 2 };

// One ring slot. Offsets, never pointers; little-endian like every shared layout.
struct InspectDesc {
  std::uint64_t stream_id;
  std::uint64_t stream_offset;  // of the payload's first byte within its direction
  std::uint64_t token;          // TOE-assigned payload token, echoed by verdicts
  std::uint32_t chunk;          // payload chunk index in "pool"
  std::uint32_t offset;         // within the chunk
  std::uint32_t length;         // bytes
  std::uint32_t seq;            // per stream and direction, from 0: the delivery order
  InspectKind kind;
  std::uint8_t direction;   // 0 outbound (guest -> wire), 1 inbound (wire -> guest)
  std::uint8_t step;        // chain step index of the consumer (payload) or producer (verdict)
  InspectAction action;     // verdicts
  std::uint16_t from_node;  // producer node, checked against the ring it came from
  std::uint16_t flags;
  std::uint32_t reason;  // verdicts: InspectReason
  std::uint32_t reserved[3];
};
static_assert(sizeof(InspectDesc) == 64);

// Why a verdict blocks without an engine finding (fail-safe paths), carried in InspectDesc.reason.
enum class InspectReason : std::uint32_t {
  kNone = 0,
  kEngine = 1,         // the engine's verdict (details in the alert log / ctl up ring)
  kUnknownStream = 2,  // the SVM has no stream table entry for it
  kBadPayload = 3,     // the payload reference failed validation at the SVM
  kEngineError = 4,    // the engine could not make a thread or open the stream
};
std::string_view to_string(InspectReason r);

inline constexpr std::uint32_t pack_doorbell(PeerId peer, Vector vector) {
  return std::uint32_t{peer} << 16 | vector;
}

// Bytes one ring occupies in area "mesh".
constexpr std::size_t inspection_ring_stride(std::uint32_t ring_slots) {
  return kRingHeaderSize + std::size_t{ring_slots} * sizeof(InspectDesc);
}

// The layout of an inspection region for `cfg` (validated by format_inspection_channel()).
RegionLayout inspection_region_layout(const InspectionConfig& cfg);
Status check_inspection_config(const InspectionConfig& cfg);

// Formats every mesh ring, control ring and node slot and publishes InspectionGeometry. TOE only,
// after RegionLayout::format().
Status format_inspection_channel(const RegionView& view, const InspectionConfig& cfg);

// Validates a descriptor copied out of ring[from][to] against the geometry: kind, direction,
// from_node == from, step < max_steps, and for payloads the chunk reference. Returns a message
// naming the bad field, or empty when valid. Builds a string only on error.
std::string validate_inspect_desc(const InspectDesc& d, std::uint16_t from, const BufferPool& pool,
                                  std::uint32_t max_steps);

// A validated view of an inspection region's areas. Geometry comes from `cfg` on the TOE side
// and from the published InspectionGeometry on the SVM side (checked against the area sizes).
class InspectionChannel {
 public:
  static Result<InspectionChannel> attach_toe(const RegionView& view, const InspectionConfig& cfg);
  static Result<InspectionChannel> attach_svm(const RegionView& view);

  const InspectionConfig& config() const { return cfg_; }
  std::uint32_t nodes() const { return cfg_.nodes; }

  // ring[from][to]; EINVAL for from == to or an id out of range.
  Result<SpscRing> ring(std::uint16_t from, std::uint16_t to, RingEnd end) const;
  // Control ring towards node (down = TOE -> SVM) or from it (up = SVM -> TOE); node in [1, nodes).
  Result<ControlRing> control(std::uint16_t node, bool down) const;
  // Node slot; nullptr if out of range.
  NodeSlot* node(std::uint16_t id) const;
  const BufferPool& pool() const { return pool_; }

  // Publishes this node as online: doorbell address, name, pid, bumped incarnation, heartbeat.
  // Returns the new incarnation.
  std::uint32_t announce(std::uint16_t id, PeerId peer, Vector vector, std::string_view name) const;
  // Marks this node as leaving (clean shutdown).
  void retire(std::uint16_t id) const;
  // Where to ring node `id`; ENOENT if it is not online.
  Result<std::pair<PeerId, Vector>> doorbell_of(std::uint16_t id) const;

 private:
  friend Status format_inspection_channel(const RegionView& view, const InspectionConfig& cfg);
  static Result<InspectionChannel> attach(const RegionView& view, const InspectionConfig& cfg);
  InspectionConfig cfg_;
  std::span<std::byte> nodes_;
  std::span<std::byte> mesh_;
  std::span<std::byte> control_;
  BufferPool pool_;
};

// Monotonic clock in ns (CLOCK_MONOTONIC: comparable across processes of one host).
std::uint64_t monotonic_ns();

}  // namespace tosec::rpc
