#include "peer_id_allocator.h"

#include <algorithm>

namespace tosec::host {

PeerIdAllocator::PeerIdAllocator(IdPolicy policy, PeerId max_id)
    : policy_(policy), used_(std::size_t{max_id} + 1, false) {}

std::optional<PeerId> PeerIdAllocator::allocate() {
  const std::size_t n = used_.size();
  if (count_ == n) return std::nullopt;
  const std::size_t start = policy_ == IdPolicy::kRoundRobin ? next_ : lowest_maybe_free_;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t id = (start + i) % n;
    if (!used_[id]) {
      used_[id] = true;
      ++count_;
      next_ = (id + 1) % n;
      if (policy_ == IdPolicy::kLowestFree) lowest_maybe_free_ = id + 1;
      return static_cast<PeerId>(id);
    }
  }
  return std::nullopt;  // unreachable: count_ < n guarantees a free id
}

void PeerIdAllocator::release(PeerId id) {
  if (in_use(id)) {
    used_[id] = false;
    --count_;
    lowest_maybe_free_ = std::min<std::size_t>(lowest_maybe_free_, id);
  }
}

}  // namespace tosec::host
