// Single-producer / single-consumer ring of fixed-size slots in shared memory.
//
//   area: +-------------------- kRingHeaderSize (256) --------------------+---------------------+
//         | line 0: magic, capacity, slot size (written once, at format)  |                     |
//         | line 1: head (producer index), producer_sleeping              |  capacity slots of  |
//         | line 2: tail (consumer index), consumer_sleeping              |  slot_size bytes    |
//         | line 3: reserved                                              |                     |
//         +---------------------------------------------------------------+---------------------+
//
// Indices are free-running 32-bit counters; slot = index & (capacity - 1). Each cache line is
// written by one side only, so the two sides never false-share. Ordering: the producer writes
// slots, then stores head with release; the consumer loads head with acquire, reads slots, then
// stores tail with release; the producer loads tail with acquire before reusing slots.
//
// Trust: each end keeps its own index privately and only *reads* the other end's index from
// shared memory, validating it (the other end may be an untrusted guest). A peer index that
// goes backwards or claims more than `capacity` outstanding slots marks the ring broken (sticky);
// every call then does nothing and the owner closes the channel.
//
// A consumer of an untrusted ring must copy a slot out before validating it (dequeue_burst does),
// because the producer can still write to it while it is being read.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "tosec/rpc/region.h"
#include "tosec/rpc/status.h"

namespace tosec::rpc {

inline constexpr std::size_t kRingHeaderSize = 256;
inline constexpr std::uint32_t kMaxRingSlotSize = 4096;
inline constexpr std::uint32_t kRingMagic = 0x52'49'4E'47;  // "RING"

// The shared part of a ring (first kRingHeaderSize bytes of its area).
struct RingShared {
  alignas(kCacheLine) std::uint32_t magic;
  std::uint32_t capacity;
  std::uint32_t slot_size;
  alignas(kCacheLine) std::atomic<std::uint32_t> head;  // producer-owned line
  std::atomic<std::uint32_t> producer_sleeping;         // producer blocked waiting for room
  alignas(kCacheLine) std::atomic<std::uint32_t> tail;  // consumer-owned line
  std::atomic<std::uint32_t> consumer_sleeping;         // consumer blocked waiting for data
  alignas(kCacheLine) std::uint8_t reserved[kCacheLine];
};
static_assert(sizeof(RingShared) == kRingHeaderSize);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

enum class RingEnd { kProducer, kConsumer };

class SpscRing {
 public:
  SpscRing() = default;

  // Writes an empty ring into `area` (kRingHeaderSize + slots * slot_size bytes).
  static Status format(std::span<std::byte> area, std::uint32_t slots, std::uint32_t slot_size);
  // Attaches one end of a ring whose geometry the caller knows (from its validated region view:
  // never from the ring's own header). Checks the header's magic and geometry match.
  static Result<SpscRing> attach(std::span<std::byte> area, std::uint32_t slots,
                                 std::uint32_t slot_size, RingEnd end, std::string_view name);
  // Attaches the ring area called `name` of a validated region.
  static Result<SpscRing> attach(const RegionView& region, std::string_view name, RingEnd end);

  std::uint32_t capacity() const { return capacity_; }
  std::uint32_t slot_size() const { return slot_size_; }
  const std::string& name() const { return name_; }
  RingEnd end() const { return end_; }

  // ---- producer end ----
  // Number of slots that can be written now (reloads the consumer's index).
  std::uint32_t free_slots();
  // Zero-copy: the i-th free slot (i < free_slots()); fill it, then publish().
  std::byte* producer_slot(std::uint32_t i) { return slot_ptr(head_ + i); }
  // Makes the next n filled slots visible to the consumer.
  void publish(std::uint32_t n) {
    head_ += n;
    shared_->head.store(head_, std::memory_order_release);
  }
  // Copies up to n slots (slot_size bytes each) from src; returns how many were enqueued.
  std::uint32_t enqueue_burst(const void* src, std::uint32_t n);

  // ---- consumer end ----
  // Number of slots ready to read (reloads the producer's index).
  std::uint32_t available();
  // Zero-copy: the i-th ready slot (i < available()); read it, then release(). Only for trusted
  // producers: see the file comment.
  const std::byte* consumer_slot(std::uint32_t i) { return slot_ptr(tail_ + i); }
  void release(std::uint32_t n) {
    tail_ += n;
    shared_->tail.store(tail_, std::memory_order_release);
  }
  // Copies up to n slots out into dst; returns how many were dequeued.
  std::uint32_t dequeue_burst(void* dst, std::uint32_t n);

  // ---- state shared with the notifier ----
  std::atomic<std::uint32_t>& consumer_sleeping() { return shared_->consumer_sleeping; }
  std::atomic<std::uint32_t>& producer_sleeping() { return shared_->producer_sleeping; }

  // True once the peer has corrupted the indices; error() says how.
  bool broken() const { return broken_; }
  const std::string& error() const { return error_; }

 private:
  std::byte* slot_ptr(std::uint32_t index) const {
    return slots_ + std::size_t{index & mask_} * slot_size_;
  }
  void mark_broken(std::string why);
  bool refresh_tail();  // producer: reload and validate the consumer's index
  bool refresh_head();  // consumer: reload and validate the producer's index

  RingShared* shared_ = nullptr;
  std::byte* slots_ = nullptr;
  std::uint32_t capacity_ = 0;
  std::uint32_t mask_ = 0;
  std::uint32_t slot_size_ = 0;
  std::uint32_t head_ = 0;  // producer: private head; consumer: cached head
  std::uint32_t tail_ = 0;  // consumer: private tail; producer: cached tail
  RingEnd end_ = RingEnd::kProducer;
  bool broken_ = false;
  std::string name_;
  std::string error_;
};

// Typed view: slots hold one trivially copyable T each.
template <class T>
class TypedRing {
  static_assert(std::is_trivially_copyable_v<T>);
  static_assert(sizeof(T) % 8 == 0, "slot types are padded to a multiple of 8 bytes");

 public:
  TypedRing() = default;
  explicit TypedRing(SpscRing ring) : ring_(std::move(ring)) {}
  static Result<TypedRing> attach(const RegionView& region, std::string_view name, RingEnd end) {
    auto r = SpscRing::attach(region, name, end);
    if (!r) return r.error();
    if (r->slot_size() != sizeof(T)) {
      return Error{EPROTO, "ring '" + std::string(name) + "': slot size " +
                               std::to_string(r->slot_size()) + ", expected " +
                               std::to_string(sizeof(T))};
    }
    return TypedRing(std::move(r.value()));
  }
  std::uint32_t enqueue_burst(std::span<const T> items) {
    return ring_.enqueue_burst(items.data(), static_cast<std::uint32_t>(items.size()));
  }
  std::uint32_t dequeue_burst(std::span<T> out) {
    return ring_.dequeue_burst(out.data(), static_cast<std::uint32_t>(out.size()));
  }
  bool enqueue(const T& item) { return ring_.enqueue_burst(&item, 1) == 1; }
  bool dequeue(T& item) { return ring_.dequeue_burst(&item, 1) == 1; }
  SpscRing& raw() { return ring_; }

 private:
  SpscRing ring_;
};

}  // namespace tosec::rpc
