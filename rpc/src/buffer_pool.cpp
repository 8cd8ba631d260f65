#include "tosec/rpc/buffer_pool.h"

#include <string>

namespace tosec::rpc {

namespace {
enum : std::uint8_t { kFree = 0, kAllocated = 1, kLent = 2 };

Error range_error(const char* what, std::uint32_t i, std::size_t n) {
  return Error{EINVAL, std::string(what) + ": chunk " + std::to_string(i) +
                           " out of range (pool has " + std::to_string(n) + ")"};
}
}  // namespace

Result<BufferPool> BufferPool::attach(std::span<std::byte> area, std::uint32_t chunks,
                                      std::uint32_t chunk_size, std::string_view name) {
  if (chunks == 0 || chunk_size == 0 || area.size() / chunk_size < chunks) {
    return Error{EINVAL, "pool '" + std::string(name) + "': " + std::to_string(chunks) + " x " +
                             std::to_string(chunk_size) + " does not fit its area"};
  }
  BufferPool p;
  p.base_ = area.data();
  p.count_ = chunks;
  p.chunk_size_ = chunk_size;
  p.name_ = std::string(name);
  return p;
}

Result<BufferPool> BufferPool::attach(const RegionView& region, std::string_view name) {
  auto a = region.find(name, AreaKind::kPool);
  if (!a) return a.error();
  return attach(region.area_bytes(*a), a->count, a->elem_size, name);
}

Result<std::span<std::byte>> BufferPool::checked(const BufferRef& ref) const {
  if (ref.chunk >= count_) {
    return Error{EINVAL, "pool '" + name_ + "': chunk " + std::to_string(ref.chunk) +
                             " out of range (" + std::to_string(count_) + " chunks)"};
  }
  if (ref.offset > chunk_size_ || ref.length > chunk_size_ - ref.offset) {
    return Error{EINVAL, "pool '" + name_ + "': offset " + std::to_string(ref.offset) +
                             " + length " + std::to_string(ref.length) + " exceeds chunk size " +
                             std::to_string(chunk_size_)};
  }
  return chunk(ref.chunk).subspan(ref.offset, ref.length);
}

Status ChunkLedger::take(std::uint32_t i) {
  if (i >= held_.size()) return range_error("ledger take", i, held_.size());
  if (held_[i]) return Error{EALREADY, "ledger: chunk " + std::to_string(i) + " is already held"};
  held_[i] = true;
  ++held_count_;
  return {};
}

Status ChunkLedger::give(std::uint32_t i) {
  if (i >= held_.size()) return range_error("ledger give", i, held_.size());
  if (!held_[i]) return Error{EPERM, "ledger: chunk " + std::to_string(i) + " is not held"};
  held_[i] = false;
  --held_count_;
  return {};
}

ChunkAllocator::ChunkAllocator(std::uint32_t chunks) : state_(chunks, kFree), lent_(chunks) {
  free_.reserve(chunks);
  // Pushed in reverse so chunk 0 is handed out first.
  for (std::uint32_t i = chunks; i > 0; --i) free_.push_back(i - 1);
}

Result<std::uint32_t> ChunkAllocator::allocate() {
  if (free_.empty()) return Error{ENOBUFS, "pool exhausted"};
  const std::uint32_t i = free_.back();
  free_.pop_back();
  state_[i] = kAllocated;
  return i;
}

Status ChunkAllocator::free(std::uint32_t i) {
  if (i >= state_.size()) return range_error("free", i, state_.size());
  if (state_[i] != kAllocated) {
    return Error{EPERM, "free: chunk " + std::to_string(i) + " is not allocated by us"};
  }
  state_[i] = kFree;
  free_.push_back(i);
  return {};
}

Status ChunkAllocator::lend(std::uint32_t i) {
  if (i >= state_.size()) return range_error("lend", i, state_.size());
  if (state_[i] != kAllocated) {
    return Error{EPERM, "lend: chunk " + std::to_string(i) + " is not allocated by us"};
  }
  state_[i] = kLent;
  return lent_.take(i);
}

Status ChunkAllocator::reclaim(std::uint32_t i) {
  if (i >= state_.size()) return range_error("reclaim", i, state_.size());
  if (state_[i] != kLent) {
    return Error{EPERM, "reclaim: chunk " + std::to_string(i) + " was not lent to the peer"};
  }
  if (auto s = lent_.give(i); !s) return s;
  state_[i] = kFree;
  free_.push_back(i);
  return {};
}

void ChunkAllocator::reclaim_all() {
  for (std::uint32_t i = 0; i < state_.size(); ++i) {
    if (state_[i] == kLent) (void)reclaim(i);
  }
}

}  // namespace tosec::rpc
