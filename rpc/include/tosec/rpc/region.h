// Region layout: how a shared-memory region is carved into areas.
//
//   offset 0                                                     total_size
//   +----------------------+--------+--------+--------+--------+
//   | RegionHeader (4 KiB) | area 0 | area 1 |  ...   | area N |
//   +----------------------+--------+--------+--------+--------+
//   header: magic, layout version, total size, state, area table (name, kind, offset, size,
//   count, element size), peer table.
//
// Areas are located by offsets from the start of the region, never by pointers, so one region
// works at any mapping address, in any process and in any VM (BAR2 of the ivshmem device).
//
// Trust: one trusted peer *formats* the region (the TOVM for a guest region); everyone else
// *attaches*, which validates the whole header and takes a private copy of the area table. After
// attach nobody re-reads geometry from shared memory: an untrusted guest may scribble over the
// header later, and that must not move the TOE's view of where rings and pools are.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/status.h"

namespace tosec::rpc {

inline constexpr std::uint64_t kRegionMagic = 0x31'4E'47'52'43'45'53'4FULL;  // "OSECRGN1" LE
inline constexpr std::uint32_t kLayoutVersion = 1;
inline constexpr std::size_t kRegionHeaderSize = 4096;
inline constexpr std::size_t kMaxAreas = 32;
inline constexpr std::size_t kMaxPeers = 32;
inline constexpr std::size_t kAreaNameLen = 16;
inline constexpr std::size_t kCacheLine = 64;

enum class AreaKind : std::uint32_t {
  kRing = 1,      // SPSC ring of fixed-size slots (spsc_ring.h); count = slots, elem = slot size
  kByteRing = 2,  // SPSC byte ring of framed messages (control_ring.h); count = capacity bytes
  kPool = 3,      // buffer pool of fixed-size chunks (buffer_pool.h); count = chunks, elem = size
  kRaw = 4,       // opaque bytes owned by one role
};
std::string_view to_string(AreaKind k);

enum class RegionState : std::uint32_t { kBlank = 0, kFormatting = 1, kReady = 2 };

// What a region holds, as described in its header. 48 bytes.
struct AreaDesc {
  char name[kAreaNameLen];  // NUL-padded, e.g. "req", "ctl.g2t", "pool.tx"
  AreaKind kind;
  std::uint32_t flags;
  std::uint64_t offset;  // from the start of the region; multiple of 64
  std::uint64_t size;    // bytes
  std::uint32_t count;   // slots / bytes / chunks, depending on kind
  std::uint32_t elem_size;
};
static_assert(sizeof(AreaDesc) == 48);

// One entry of the peer table: which ivshmem peer plays which role in this region. Advisory
// (for status and debugging); addressing uses the ids the ivshmem server hands out.
enum class PeerRole : std::uint16_t {
  kNone = 0,
  kGuest = 1,
  kTovm = 2,
  kSvm = 3,
  kHost = 4,
  kTest = 5
};
struct PeerEntry {
  std::atomic<std::uint32_t> state;  // 0 free, 1 claimed
  std::uint16_t ivshmem_id;
  PeerRole role;
  std::uint32_t pid;
  std::uint32_t reserved;
  std::atomic<std::uint64_t> heartbeat;  // bumped by the peer; a stuck value means a stuck peer
  char name[kAreaNameLen];
  std::uint8_t pad[24];
};
static_assert(sizeof(PeerEntry) == 64);

struct RegionHeader {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t header_size;
  std::uint64_t total_size;
  std::atomic<RegionState> state;
  std::uint32_t area_count;
  std::uint64_t generation;  // bumped at every format: attachers can tell a re-formatted region
  std::uint8_t pad0[24];
  AreaDesc areas[kMaxAreas];   // 1536 bytes
  PeerEntry peers[kMaxPeers];  // 2048 bytes
};
static_assert(sizeof(RegionHeader) <= kRegionHeaderSize);
static_assert(std::atomic<RegionState>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// Builder for a region's layout. Areas are packed in the order added, each aligned to 64 bytes
// (pools to 4096, so chunks can be page aligned).
class RegionLayout {
 public:
  RegionLayout& add_ring(std::string_view name, std::uint32_t slots, std::uint32_t slot_size);
  RegionLayout& add_byte_ring(std::string_view name, std::uint32_t capacity_bytes);
  RegionLayout& add_pool(std::string_view name, std::uint32_t chunks, std::uint32_t chunk_size);
  RegionLayout& add_raw(std::string_view name, std::uint64_t bytes);

  // Bytes the region needs; ceil to a power of two for QEMU (pow2_size()).
  std::uint64_t required_size() const;
  std::uint64_t pow2_size() const;

  // Checks the layout itself (names unique and short, geometry powers of two) and that it fits
  // `region`, then writes the header and formats every area (rings empty, pools zeroed).
  // Marks the region ready last, with release order, so an attacher never sees half a layout.
  Status format(std::span<std::byte> region) const;

  const std::vector<AreaDesc>& areas() const { return areas_; }

 private:
  RegionLayout& add(std::string_view name, AreaKind kind, std::uint64_t size, std::uint32_t count,
                    std::uint32_t elem, std::uint64_t align);
  std::vector<AreaDesc> areas_;
  std::vector<std::uint64_t> aligns_;
  Status deferred_;  // first error from an add_*(), reported by format()
};

// A validated, private view of a formatted region.
class RegionView {
 public:
  // Validates magic, version, sizes, state and every area (in bounds, aligned, no overlap,
  // geometry consistent with its kind). Errors name the field and the value found.
  static Result<RegionView> attach(std::span<std::byte> region);

  std::span<std::byte> bytes() const { return region_; }
  std::uint64_t generation() const { return generation_; }
  const std::vector<AreaDesc>& areas() const { return areas_; }

  // Finds an area by name and kind; ENOENT naming the area if missing.
  Result<AreaDesc> find(std::string_view name, AreaKind kind) const;
  // The bytes of an area (validated at attach).
  std::span<std::byte> area_bytes(const AreaDesc& a) const;

  // Peer table (advisory). claim_peer() takes a free entry; returns its index.
  Result<std::size_t> claim_peer(std::uint16_t ivshmem_id, PeerRole role, std::string_view name,
                                 std::uint32_t pid) const;
  void release_peer(std::size_t index) const;
  void heartbeat(std::size_t index) const;
  struct PeerInfo {
    std::size_t index;
    std::uint16_t ivshmem_id;
    PeerRole role;
    std::uint32_t pid;
    std::uint64_t heartbeat;
    std::string name;
  };
  std::vector<PeerInfo> peers() const;

 private:
  RegionHeader& header() const { return *reinterpret_cast<RegionHeader*>(region_.data()); }
  std::span<std::byte> region_;
  std::uint64_t generation_ = 0;
  std::vector<AreaDesc> areas_;
};

// Shared checks, also used by the fuzz target.
Status validate_area(const AreaDesc& a, std::uint64_t region_size);
std::string area_name(const AreaDesc& a);

}  // namespace tosec::rpc
