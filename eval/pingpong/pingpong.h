// Ping-pong over a region: the measurement core shared by the channel benchmark and the demo.
//
// One side ("pinger") enqueues a message on `out`, notifies, and waits for the echo on `in`;
// the other ("ponger") echoes every message back. A round trip is two hops; a hop is what one
// descriptor costs from producer to consumer, notification included.
#pragma once

#include <cstdint>
#include <vector>

#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/notifier.h"
#include "tosec/rpc/region.h"
#include "tosec/rpc/spsc_ring.h"
#include "tosec/rpc/status.h"

namespace tosec::eval {

// The layout both sides use: two 64-byte-slot rings, one per direction.
rpc::RegionLayout pingpong_layout();

struct PingPongEnd {
  rpc::SpscRing out;  // we produce
  rpc::SpscRing in;   // we consume
  rpc::DoorbellRinger* ringer = nullptr;
  rpc::DoorbellWaiter* waiter = nullptr;
  rpc::PeerId peer = 0;         // whom we wake
  rpc::Vector peer_vector = 0;  // ...on which vector
  rpc::Vector own_vector = 0;   // the vector we sleep on
  rpc::SpinPolicy policy;
};

// Attaches the pinger's (a_to_b = true) or ponger's ends of a formatted region.
rpc::Result<PingPongEnd> attach_end(const rpc::RegionView& view, bool pinger);

// One round trip at a time (keeps its Waiter, so an adaptive spin budget learns across calls).
class Pinger {
 public:
  explicit Pinger(PingPongEnd& end) : end_(end), waiter_(*end.waiter, end.own_vector, end.policy) {}
  rpc::Status round_trip();
  const rpc::Waiter& waiter() const { return waiter_; }

 private:
  PingPongEnd& end_;
  rpc::Waiter waiter_;
  std::uint64_t seq_ = 0;
};

// Runs `rounds` round trips; returns each round trip's duration in ns.
rpc::Result<std::vector<std::int64_t>> ping(PingPongEnd& end, std::uint64_t rounds);
// Echoes `rounds` messages, or until stop_ponger() (pass UINT64_MAX rounds to run until then).
rpc::Status pong(PingPongEnd& end, std::uint64_t rounds);
inline constexpr std::uint64_t kStopSeq = UINT64_MAX;
rpc::Status stop_ponger(PingPongEnd& end);

// The floor: the same ping-pong through the doorbells alone (no ring, no flag), i.e. one
// doorbell write and one wake-up a hop.
rpc::Result<std::vector<std::int64_t>> doorbell_ping(PingPongEnd& end, std::uint64_t rounds);
rpc::Status doorbell_pong(PingPongEnd& end, std::uint64_t rounds);

struct Summary {
  double p50_ns, p90_ns, p99_ns, mean_ns;
};
Summary summarize(std::vector<std::int64_t> samples);

}  // namespace tosec::eval
