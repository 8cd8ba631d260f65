#include "tosec/rpc/region.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>

#include "tosec/rpc/control_ring_geometry.h"
#include "tosec/rpc/spsc_ring.h"

namespace tosec::rpc {

namespace {

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

bool is_pow2(std::uint64_t v) { return v != 0 && std::has_single_bit(v); }

Error area_error(const AreaDesc& a, const std::string& what) {
  return Error{EINVAL, "region: area '" + area_name(a) + "' (" + std::string(to_string(a.kind)) +
                           "): " + what};
}

// Size an area of this kind and geometry must have; 0 if the geometry itself is invalid.
Result<std::uint64_t> expected_size(const AreaDesc& a) {
  switch (a.kind) {
    case AreaKind::kRing:
      if (!is_pow2(a.count) || a.count > (1U << 30)) {
        return area_error(a, "slot count " + std::to_string(a.count) + " is not a power of two");
      }
      if (a.elem_size == 0 || a.elem_size % 8 != 0 || a.elem_size > kMaxRingSlotSize) {
        return area_error(a, "slot size " + std::to_string(a.elem_size) +
                                 " is not a multiple of 8 in [8, " +
                                 std::to_string(kMaxRingSlotSize) + "]");
      }
      return kRingHeaderSize + std::uint64_t{a.count} * a.elem_size;
    case AreaKind::kByteRing:
      if (!is_pow2(a.count) || a.count < 64 || a.count > (1U << 30)) {
        return area_error(
            a, "capacity " + std::to_string(a.count) + " is not a power of two in [64, 2^30]");
      }
      return kControlRingHeaderSize + std::uint64_t{a.count};
    case AreaKind::kPool:
      if (a.count == 0 || a.elem_size < 64 || a.elem_size % 64 != 0) {
        return area_error(a, "pool of " + std::to_string(a.count) + " chunks of " +
                                 std::to_string(a.elem_size) +
                                 " bytes: need >= 1 chunk of a multiple of 64 bytes");
      }
      return std::uint64_t{a.count} * a.elem_size;
    case AreaKind::kRaw:
      return a.size;
  }
  return area_error(a, "unknown kind " + std::to_string(static_cast<std::uint32_t>(a.kind)));
}

bool valid_name(const char (&name)[kAreaNameLen]) {
  const auto* end = static_cast<const char*>(std::memchr(name, '\0', kAreaNameLen));
  if (end == nullptr || end == name) return false;
  return std::all_of(name, end, [](char c) { return c > 0x20 && c < 0x7f; });
}

}  // namespace

std::string_view to_string(AreaKind k) {
  switch (k) {
    case AreaKind::kRing:
      return "ring";
    case AreaKind::kByteRing:
      return "byte-ring";
    case AreaKind::kPool:
      return "pool";
    case AreaKind::kRaw:
      return "raw";
  }
  return "unknown";
}

std::string area_name(const AreaDesc& a) {
  const auto* end = static_cast<const char*>(std::memchr(a.name, '\0', kAreaNameLen));
  return std::string(a.name,
                     end == nullptr ? kAreaNameLen : static_cast<std::size_t>(end - a.name));
}

Status validate_area(const AreaDesc& a, std::uint64_t region_size) {
  if (!valid_name(a.name)) return Error{EINVAL, "region: area name is empty or not printable"};
  auto want = expected_size(a);
  if (!want) return want.error();
  if (a.size != *want) {
    return area_error(a, "size " + std::to_string(a.size) + " does not match its geometry (" +
                             std::to_string(*want) + ")");
  }
  if (a.offset % kCacheLine != 0) {
    return area_error(a, "offset " + std::to_string(a.offset) + " is not 64-byte aligned");
  }
  if (a.offset < kRegionHeaderSize || a.offset > region_size || a.size > region_size - a.offset) {
    return area_error(a, "[" + std::to_string(a.offset) + ", +" + std::to_string(a.size) +
                             ") lies outside the region's " + std::to_string(region_size) +
                             " bytes");
  }
  return {};
}

// ---- RegionLayout ----------------------------------------------------------------------------

RegionLayout& RegionLayout::add(std::string_view name, AreaKind kind, std::uint64_t size,
                                std::uint32_t count, std::uint32_t elem, std::uint64_t align) {
  AreaDesc a{};
  if (name.empty() || name.size() >= kAreaNameLen) {
    if (deferred_.ok()) {
      deferred_ = Error{EINVAL, "region layout: area name '" + std::string(name) + "' must be 1-" +
                                    std::to_string(kAreaNameLen - 1) + " chars"};
    }
    return *this;
  }
  std::memcpy(a.name, name.data(), name.size());
  a.kind = kind;
  a.count = count;
  a.elem_size = elem;
  a.size = size;
  areas_.push_back(a);
  aligns_.push_back(align);
  return *this;
}

RegionLayout& RegionLayout::add_ring(std::string_view name, std::uint32_t slots,
                                     std::uint32_t slot_size) {
  return add(name, AreaKind::kRing, kRingHeaderSize + std::uint64_t{slots} * slot_size, slots,
             slot_size, kCacheLine);
}

RegionLayout& RegionLayout::add_byte_ring(std::string_view name, std::uint32_t capacity_bytes) {
  return add(name, AreaKind::kByteRing, kControlRingHeaderSize + std::uint64_t{capacity_bytes},
             capacity_bytes, 0, kCacheLine);
}

RegionLayout& RegionLayout::add_pool(std::string_view name, std::uint32_t chunks,
                                     std::uint32_t chunk_size) {
  return add(name, AreaKind::kPool, std::uint64_t{chunks} * chunk_size, chunks, chunk_size, 4096);
}

RegionLayout& RegionLayout::add_raw(std::string_view name, std::uint64_t bytes) {
  return add(name, AreaKind::kRaw, align_up(bytes, kCacheLine), 0, 0, kCacheLine);
}

std::uint64_t RegionLayout::required_size() const {
  std::uint64_t off = kRegionHeaderSize;
  for (std::size_t i = 0; i < areas_.size(); ++i) off = align_up(off, aligns_[i]) + areas_[i].size;
  return off;
}

std::uint64_t RegionLayout::pow2_size() const { return std::bit_ceil(required_size()); }

Status RegionLayout::format(std::span<std::byte> region) const {
  if (!deferred_.ok()) return deferred_;
  if (areas_.size() > kMaxAreas) {
    return Error{EINVAL, "region layout: " + std::to_string(areas_.size()) + " areas, at most " +
                             std::to_string(kMaxAreas)};
  }
  if (reinterpret_cast<std::uintptr_t>(region.data()) % 4096 != 0) {
    return Error{EINVAL, "region layout: mapping is not page aligned"};
  }
  const std::uint64_t need = required_size();
  if (need > region.size()) {
    return Error{ENOSPC, "region layout: needs " + std::to_string(need) + " bytes, region has " +
                             std::to_string(region.size())};
  }
  std::vector<AreaDesc> placed = areas_;
  std::uint64_t off = kRegionHeaderSize;
  for (std::size_t i = 0; i < placed.size(); ++i) {
    off = align_up(off, aligns_[i]);
    placed[i].offset = off;
    off += placed[i].size;
    if (auto s = validate_area(placed[i], region.size()); !s) return s;
    for (std::size_t j = 0; j < i; ++j) {
      if (area_name(placed[j]) == area_name(placed[i])) {
        return area_error(placed[i], "name is used twice");
      }
    }
  }

  auto* h = reinterpret_cast<RegionHeader*>(region.data());
  const std::uint64_t generation = h->magic == kRegionMagic ? h->generation + 1 : 1;
  // Attachers check state with acquire and accept only kReady, which is stored last (release).
  h->state.store(RegionState::kFormatting, std::memory_order_relaxed);
  std::memset(static_cast<void*>(h->areas), 0, sizeof h->areas);
  std::memset(static_cast<void*>(h->peers), 0, sizeof h->peers);
  h->magic = kRegionMagic;
  h->layout_version = kLayoutVersion;
  h->header_size = static_cast<std::uint32_t>(kRegionHeaderSize);
  h->total_size = region.size();
  h->area_count = static_cast<std::uint32_t>(placed.size());
  h->generation = generation;
  for (std::size_t i = 0; i < placed.size(); ++i) {
    h->areas[i] = placed[i];
    auto bytes = region.subspan(placed[i].offset, placed[i].size);
    Status s;
    switch (placed[i].kind) {
      case AreaKind::kRing:
        s = SpscRing::format(bytes, placed[i].count, placed[i].elem_size);
        break;
      case AreaKind::kByteRing:
        s = format_control_ring(bytes, placed[i].count);
        break;
      case AreaKind::kPool:
      case AreaKind::kRaw:
        std::memset(bytes.data(), 0, bytes.size());
        break;
    }
    if (!s) return s;
  }
  h->state.store(RegionState::kReady, std::memory_order_release);
  return {};
}

// ---- RegionView ------------------------------------------------------------------------------

Result<RegionView> RegionView::attach(std::span<std::byte> region) {
  if (region.size() < kRegionHeaderSize) {
    return Error{EINVAL, "region: " + std::to_string(region.size()) +
                             " bytes is smaller than the 4096-byte header"};
  }
  if (reinterpret_cast<std::uintptr_t>(region.data()) % kCacheLine != 0) {
    return Error{EINVAL, "region: mapping is not 64-byte aligned"};
  }
  // Copy the header out first: a concurrent writer cannot change what we validate.
  RegionHeader h;
  std::memcpy(static_cast<void*>(&h), region.data(), sizeof h);
  if (h.magic != kRegionMagic) {
    return Error{EPROTO, "region: bad magic 0x" + [&] {
                   char buf[17];
                   std::snprintf(buf, sizeof buf, "%016llx",
                                 static_cast<unsigned long long>(h.magic));
                   return std::string(buf);
                 }() + " (not a TOSEC region, or not formatted yet)"};
  }
  if (h.layout_version != kLayoutVersion) {
    return Error{EPROTO, "region: layout version " + std::to_string(h.layout_version) +
                             ", this build speaks " + std::to_string(kLayoutVersion)};
  }
  if (h.header_size != kRegionHeaderSize) {
    return Error{EPROTO, "region: header size " + std::to_string(h.header_size) + ", expected " +
                             std::to_string(kRegionHeaderSize)};
  }
  if (h.total_size > region.size() || h.total_size < kRegionHeaderSize) {
    return Error{EINVAL, "region: header says " + std::to_string(h.total_size) +
                             " bytes, mapping has " + std::to_string(region.size())};
  }
  const auto state =
      reinterpret_cast<RegionHeader*>(region.data())->state.load(std::memory_order_acquire);
  if (state != RegionState::kReady) {
    return Error{EAGAIN, "region: not ready (state " +
                             std::to_string(static_cast<std::uint32_t>(state)) + ")"};
  }
  if (h.area_count > kMaxAreas) {
    return Error{EINVAL, "region: area count " + std::to_string(h.area_count) + " exceeds " +
                             std::to_string(kMaxAreas)};
  }
  // Re-read the area table after the acquire load of state, then validate that copy.
  std::memcpy(static_cast<void*>(&h), region.data(), sizeof h);
  RegionView v;
  v.region_ = region.first(h.total_size);
  v.generation_ = h.generation;
  v.areas_.assign(h.areas, h.areas + std::min<std::size_t>(h.area_count, kMaxAreas));
  for (const auto& a : v.areas_) {
    if (auto s = validate_area(a, h.total_size); !s) return s.error();
  }
  std::vector<AreaDesc> sorted = v.areas_;
  std::sort(sorted.begin(), sorted.end(),
            [](const AreaDesc& x, const AreaDesc& y) { return x.offset < y.offset; });
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i - 1].offset + sorted[i - 1].size > sorted[i].offset) {
      return area_error(sorted[i], "overlaps area '" + area_name(sorted[i - 1]) + "'");
    }
  }
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    for (std::size_t j = i + 1; j < sorted.size(); ++j) {
      if (area_name(sorted[i]) == area_name(sorted[j])) {
        return area_error(sorted[j], "name is used twice");
      }
    }
  }
  return v;
}

Result<AreaDesc> RegionView::find(std::string_view name, AreaKind kind) const {
  for (const auto& a : areas_) {
    if (area_name(a) == name) {
      if (a.kind != kind) {
        return area_error(a, "is a " + std::string(to_string(a.kind)) + ", expected a " +
                                 std::string(to_string(kind)));
      }
      return a;
    }
  }
  return Error{ENOENT, "region: no area named '" + std::string(name) + "'"};
}

std::span<std::byte> RegionView::area_bytes(const AreaDesc& a) const {
  return region_.subspan(a.offset, a.size);
}

Result<std::size_t> RegionView::claim_peer(std::uint16_t ivshmem_id, PeerRole role,
                                           std::string_view name, std::uint32_t pid) const {
  for (std::size_t i = 0; i < kMaxPeers; ++i) {
    auto& p = header().peers[i];
    std::uint32_t expected = 0;
    if (p.state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      p.ivshmem_id = ivshmem_id;
      p.role = role;
      p.pid = pid;
      p.heartbeat.store(0, std::memory_order_relaxed);
      std::memset(p.name, 0, sizeof p.name);
      std::memcpy(p.name, name.data(), std::min(name.size(), kAreaNameLen - 1));
      return i;
    }
  }
  return Error{ENOSPC, "region: peer table full (" + std::to_string(kMaxPeers) + " entries)"};
}

void RegionView::release_peer(std::size_t index) const {
  if (index < kMaxPeers) header().peers[index].state.store(0, std::memory_order_release);
}

void RegionView::heartbeat(std::size_t index) const {
  if (index < kMaxPeers) header().peers[index].heartbeat.fetch_add(1, std::memory_order_relaxed);
}

std::vector<RegionView::PeerInfo> RegionView::peers() const {
  std::vector<PeerInfo> out;
  for (std::size_t i = 0; i < kMaxPeers; ++i) {
    const auto& p = header().peers[i];
    if (p.state.load(std::memory_order_acquire) != 1) continue;
    char name[kAreaNameLen];
    std::memcpy(name, p.name, sizeof name);
    name[kAreaNameLen - 1] = '\0';
    out.push_back({i, p.ivshmem_id, p.role, p.pid, p.heartbeat.load(std::memory_order_relaxed),
                   std::string(name)});
  }
  return out;
}

}  // namespace tosec::rpc
