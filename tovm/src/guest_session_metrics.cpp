// GuestSession: the status JSON's "metrics" object (docs/tovm.md, "Status"; the contract with the
// host daemon's Prometheus exporter). Only what the TOE knows: nothing is ever dropped from a
// ring here (a full ring is backpressure), so rings report no "drops"; "backlog" counts what
// waits in the TOE for room in the ring.
#include <string>

#include "tosec/tovm/guest_session.h"

namespace tosec::tovm {

namespace {

void append_ring(std::string& o, bool& first, const std::string& name, std::uint64_t capacity,
                 std::uint64_t occupancy, std::uint64_t backlog) {
  if (!first) o += ',';
  first = false;
  o += "{\"name\":\"" + name + "\",\"capacity\":" + std::to_string(capacity) +
       ",\"occupancy\":" + std::to_string(occupancy) + ",\"backlog\":" + std::to_string(backlog) +
       '}';
}

}  // namespace

std::string GuestSession::metrics_json() {
  std::string o = "{\"streams\":{\"inspected\":" + std::to_string(counters_.streams_inspected) +
                  ",\"blocked\":" + std::to_string(counters_.streams_blocked) +
                  ",\"passed_bytes\":" + std::to_string(counters_.inspect_passed_bytes) + '}';
  if (inspect_) o += ",\"svms\":" + inspect_->svms_json();
  o += ",\"rings\":[";
  bool first = true;
  for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
    Lane& l = lanes_[i];
    if (!l.active) continue;
    const std::string lane = "lane" + std::to_string(i);
    append_ring(o, first, lane + ".req", l.req.capacity(), l.req.available(), 0);
    const std::uint32_t cap = l.cpl.capacity();
    append_ring(o, first, lane + ".cpl", cap, cap - std::min(cap, l.cpl.free_slots()),
                l.out.size());
  }
  // The sockets' rx rings, summed (one per socket: too many to list).
  std::uint64_t rx_cap = 0, rx_used = 0, rx_held = 0;
  for (std::uint32_t id = 0; id < sockets_.capacity(); ++id) {
    TSocket* s = sockets_.find(id);
    if (s == nullptr || s->rx.capacity() == 0) continue;
    rx_cap += s->rx.capacity();
    rx_used += s->rx.capacity() - std::min(s->rx.capacity(), s->rx.free_slots());
    rx_held += s->rx_held.size();
  }
  append_ring(o, first, "sockets.rx", rx_cap, rx_used, rx_held);
  if (inspect_) inspect_->append_rings_json(o, first);
  return o + "]}";
}

}  // namespace tosec::tovm
