// Buffer pools: fixed-size chunks in a region, handed between peers by index.
//
// A pool area is `count` chunks of `chunk_size` bytes. Payload bytes live in chunks; descriptors
// carry (chunk index, offset, length), never pointers. Who may touch a chunk is tracked
// privately by each side, never in shared memory, because the other side may be untrusted:
//
//  - the *allocator* side (the guest for its send pool, the TOE for a guest's receive pool)
//    keeps a free list and lends chunks out (ChunkAllocator);
//  - the *borrower* side records which chunks it currently holds (ChunkLedger), so a peer can
//    neither hand it the same chunk twice, nor make it free a chunk it does not hold.
//
// Every index, offset and length that arrives from a peer goes through BufferPool::checked()
// before any byte is touched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/region.h"
#include "tosec/rpc/status.h"

namespace tosec::rpc {

// A peer's reference to bytes in a pool, as carried in descriptors.
struct BufferRef {
  std::uint32_t chunk;
  std::uint32_t offset;  // within the chunk
  std::uint32_t length;
};

// The geometry and bytes of one pool area.
class BufferPool {
 public:
  BufferPool() = default;
  static Result<BufferPool> attach(const RegionView& region, std::string_view name);
  static Result<BufferPool> attach(std::span<std::byte> area, std::uint32_t chunks,
                                   std::uint32_t chunk_size, std::string_view name);

  std::uint32_t chunk_count() const { return count_; }
  std::uint32_t chunk_size() const { return chunk_size_; }
  const std::string& name() const { return name_; }

  // The whole chunk `i` (i < chunk_count(); callers with an index from a peer use checked()).
  std::span<std::byte> chunk(std::uint32_t i) const {
    return {base_ + std::size_t{i} * chunk_size_, chunk_size_};
  }
  // Validates a peer-supplied reference: chunk in range, offset + length inside the chunk
  // (without overflow). Returns the bytes, or EINVAL naming the bad field.
  Result<std::span<std::byte>> checked(const BufferRef& ref) const;
  // The same check without building an error message, for hot paths that count rejects.
  bool valid(const BufferRef& ref) const {
    return ref.chunk < count_ && ref.offset <= chunk_size_ &&
           ref.length <= chunk_size_ - ref.offset;
  }

 private:
  std::byte* base_ = nullptr;
  std::uint32_t count_ = 0;
  std::uint32_t chunk_size_ = 0;
  std::string name_;
};

// Which chunks of a pool this side holds. All transitions are checked.
class ChunkLedger {
 public:
  explicit ChunkLedger(std::uint32_t chunks = 0) : held_(chunks, false) {}
  std::uint32_t size() const { return static_cast<std::uint32_t>(held_.size()); }
  std::uint32_t held_count() const { return held_count_; }
  bool holds(std::uint32_t i) const { return i < held_.size() && held_[i]; }

  // Takes chunk i; EINVAL if out of range, EALREADY if already held (a double hand-over).
  Status take(std::uint32_t i);
  // Gives chunk i back; EINVAL if out of range, EPERM if not held.
  Status give(std::uint32_t i);

 private:
  std::vector<bool> held_;
  std::uint32_t held_count_ = 0;
};

// The allocator side: a LIFO free list (recently used chunks are warm in cache) plus a ledger
// of chunks lent to the peer.
class ChunkAllocator {
 public:
  explicit ChunkAllocator(std::uint32_t chunks = 0);
  std::uint32_t free_count() const { return static_cast<std::uint32_t>(free_.size()); }
  std::uint32_t lent_count() const { return lent_.held_count(); }

  // A free chunk for us to fill, or ENOBUFS when the pool is exhausted (backpressure).
  Result<std::uint32_t> allocate();
  // Returns a chunk we allocated but did not lend.
  Status free(std::uint32_t i);
  // Marks an allocated chunk as handed to the peer.
  Status lend(std::uint32_t i);
  // The peer gives a chunk back (index from shared memory: fully checked); it becomes free.
  Status reclaim(std::uint32_t i);
  // The peer is gone: everything lent comes back.
  void reclaim_all();

 private:
  std::vector<std::uint32_t> free_;
  std::vector<std::uint8_t> state_;  // 0 free, 1 allocated (ours), 2 lent (theirs)
  ChunkLedger lent_;
};

}  // namespace tosec::rpc
