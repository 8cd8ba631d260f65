#include "tosec/rpc/spsc_ring.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

namespace tosec::rpc {

Status SpscRing::format(std::span<std::byte> area, std::uint32_t slots, std::uint32_t slot_size) {
  if (!std::has_single_bit(slots)) {
    return Error{EINVAL, "ring: slot count " + std::to_string(slots) + " is not a power of two"};
  }
  if (slot_size == 0 || slot_size % 8 != 0 || slot_size > kMaxRingSlotSize) {
    return Error{EINVAL, "ring: slot size " + std::to_string(slot_size) + " is invalid"};
  }
  if (area.size() < kRingHeaderSize + std::size_t{slots} * slot_size) {
    return Error{ENOSPC, "ring: area of " + std::to_string(area.size()) + " bytes is too small"};
  }
  std::memset(area.data(), 0, area.size());
  auto* s = new (area.data()) RingShared{};  // starts the lifetime of the atomics
  s->magic = kRingMagic;
  s->capacity = slots;
  s->slot_size = slot_size;
  return {};
}

Result<SpscRing> SpscRing::attach(std::span<std::byte> area, std::uint32_t slots,
                                  std::uint32_t slot_size, RingEnd end, std::string_view name) {
  const std::string n(name);
  if (!std::has_single_bit(slots) || slot_size == 0 || slot_size % 8 != 0 ||
      area.size() < kRingHeaderSize + std::size_t{slots} * slot_size) {
    return Error{EINVAL, "ring '" + n + "': geometry " + std::to_string(slots) + " x " +
                             std::to_string(slot_size) + " does not fit its area"};
  }
  if (reinterpret_cast<std::uintptr_t>(area.data()) % kCacheLine != 0) {
    return Error{EINVAL, "ring '" + n + "': area is not 64-byte aligned"};
  }
  auto* shared = reinterpret_cast<RingShared*>(area.data());
  if (shared->magic != kRingMagic || shared->capacity != slots || shared->slot_size != slot_size) {
    return Error{EPROTO, "ring '" + n + "': header does not match the region's area table"};
  }
  SpscRing r;
  r.shared_ = shared;
  r.slots_ = area.data() + kRingHeaderSize;
  r.capacity_ = slots;
  r.mask_ = slots - 1;
  r.slot_size_ = slot_size;
  r.end_ = end;
  r.name_ = n;
  // Each end resumes from the indices as they are now (a restarted end picks up where its
  // predecessor stopped); the peer's index is validated on first use.
  r.head_ = shared->head.load(std::memory_order_acquire);
  r.tail_ = shared->tail.load(std::memory_order_acquire);
  if (r.head_ - r.tail_ > r.capacity_) {
    return Error{EPROTO, "ring '" + n + "': " + std::to_string(r.head_ - r.tail_) +
                             " slots outstanding in a ring of " + std::to_string(slots)};
  }
  return r;
}

Result<SpscRing> SpscRing::attach(const RegionView& region, std::string_view name, RingEnd end) {
  auto a = region.find(name, AreaKind::kRing);
  if (!a) return a.error();
  return attach(region.area_bytes(*a), a->count, a->elem_size, end, name);
}

void SpscRing::mark_broken(std::string why) {
  if (broken_) return;
  broken_ = true;
  error_ = "ring '" + name_ + "': " + std::move(why);
}

bool SpscRing::refresh_tail() {
  const std::uint32_t t = shared_->tail.load(std::memory_order_acquire);
  // The consumer only moves forward, and never past what we published.
  if (t - tail_ > head_ - tail_) {
    mark_broken("consumer index " + std::to_string(t) + " is outside [" + std::to_string(tail_) +
                ", " + std::to_string(head_) + "]");
    return false;
  }
  tail_ = t;
  return true;
}

bool SpscRing::refresh_head() {
  const std::uint32_t h = shared_->head.load(std::memory_order_acquire);
  // The producer only moves forward, and never more than `capacity` ahead of us.
  if (h - tail_ > capacity_ || h - tail_ < head_ - tail_) {
    mark_broken("producer index " + std::to_string(h) + " is inconsistent with consumer index " +
                std::to_string(tail_) + " (capacity " + std::to_string(capacity_) + ")");
    return false;
  }
  head_ = h;
  return true;
}

std::uint32_t SpscRing::free_slots() {
  if (broken_ || !refresh_tail()) return 0;
  return capacity_ - (head_ - tail_);
}

std::uint32_t SpscRing::available() {
  if (broken_ || !refresh_head()) return 0;
  return head_ - tail_;
}

std::uint32_t SpscRing::enqueue_burst(const void* src, std::uint32_t n) {
  if (broken_) return 0;
  std::uint32_t room = capacity_ - (head_ - tail_);
  if (room < n) room = free_slots();  // touch the consumer's line only when short of room
  n = std::min(n, room);
  if (n == 0) return 0;
  const auto* in = static_cast<const std::byte*>(src);
  // At most two copies: up to the end of the slot array, then from its start.
  const std::uint32_t first = std::min(n, capacity_ - (head_ & mask_));
  std::memcpy(slot_ptr(head_), in, std::size_t{first} * slot_size_);
  if (first < n) {
    std::memcpy(slots_, in + std::size_t{first} * slot_size_, std::size_t{n - first} * slot_size_);
  }
  publish(n);
  return n;
}

std::uint32_t SpscRing::dequeue_burst(void* dst, std::uint32_t n) {
  if (broken_) return 0;
  std::uint32_t ready = head_ - tail_;
  if (ready < n) ready = available();  // touch the producer's line only when short of data
  n = std::min(n, ready);
  if (n == 0) return 0;
  auto* out = static_cast<std::byte*>(dst);
  const std::uint32_t first = std::min(n, capacity_ - (tail_ & mask_));
  std::memcpy(out, slot_ptr(tail_), std::size_t{first} * slot_size_);
  if (first < n) {
    std::memcpy(out + std::size_t{first} * slot_size_, slots_, std::size_t{n - first} * slot_size_);
  }
  release(n);
  return n;
}

}  // namespace tosec::rpc
