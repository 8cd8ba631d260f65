// Peer id allocation for the ivshmem server.
//
// Ids are 16-bit (they travel in the high half of the ivshmem Doorbell register). Two policies:
//  - kLowestFree (default): the smallest id not in use, so a departed id is reused by the next
//    peer. A role that restarts gets its old id back if nobody took it meanwhile, which keeps
//    addressing stable (e.g. the TOVM as peer 0, which QEMU's `master=on` also requires).
//  - kRoundRobin: QEMU ivshmem-server's behaviour, a 16-bit counter that skips ids in use, so a
//    departed id comes back only after the counter wrapped.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "tosec/rpc/doorbell.h"

namespace tosec::host {

using rpc::PeerId;

enum class IdPolicy { kLowestFree, kRoundRobin };

class PeerIdAllocator {
 public:
  // `max_id` below 0xFFFF shrinks the id space (tests of exhaustion and wrap-around).
  explicit PeerIdAllocator(IdPolicy policy = IdPolicy::kLowestFree, PeerId max_id = 0xFFFF);

  // A free id, or nullopt when all max_id + 1 ids are in use.
  std::optional<PeerId> allocate();
  void release(PeerId id);
  bool in_use(PeerId id) const { return id < used_.size() && used_[id]; }
  std::size_t in_use_count() const { return count_; }

 private:
  IdPolicy policy_;
  std::vector<bool> used_;
  std::size_t count_ = 0;
  std::size_t next_ = 0;               // round-robin cursor (QEMU's cur_id)
  std::size_t lowest_maybe_free_ = 0;  // lowest-free: no id below this is free
};

}  // namespace tosec::host
