// An SVM's local stream table: stream id -> what the stream is and where its payloads go next.
//
// Filled only from the TOE's StreamTableUpdate messages (control ring "down"), which the TOE
// publishes before the stream's first payload; read by the SVM's manager thread, which hands
// each payload to a worker together with a shared_ptr to the route (so removing an entry never
// pulls it from under a worker). Not thread-safe: the manager thread owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"
#include "tosec/v1/control.pb.h"

namespace tosec::svm {

// Where a payload goes after this SVM passed it.
struct Hop {
  enum class Kind : std::uint8_t { kToe, kSvm };
  Kind kind = Kind::kToe;
  std::uint8_t step = 0;             // chain step index of the next SVM(s)
  std::vector<std::uint16_t> nodes;  // their node ids (several: a parallel group)
};

struct StreamRoute {
  StreamInfo info;
  std::uint32_t chain_id = 0;
  std::uint8_t step = 0;  // this SVM's step in the chain
  Hop outbound;           // next hop of outgoing payloads
  Hop inbound;            // next hop of incoming payloads
  const Hop& next(Direction d) const { return d == Direction::kOutbound ? outbound : inbound; }
};

// Conversions between the protobuf entry and the route (both sides use them: the TOE builds
// entries, the SVM parses them). from_entry validates node ids against `nodes`.
rpc::Result<StreamRoute> route_from_entry(const tosec::v1::StreamEntry& e, std::uint32_t nodes);
tosec::v1::StreamEntry entry_from_route(const StreamRoute& r);

class StreamTable {
 public:
  explicit StreamTable(std::uint32_t nodes) : nodes_(nodes) {}
  // Removals first, then additions (an addition replaces an entry with the same id). Returns
  // the number of entries rejected (each logged into `errors` if given).
  std::size_t apply(const tosec::v1::StreamTableUpdate& u, std::string* errors = nullptr);
  std::shared_ptr<const StreamRoute> find(std::uint64_t stream_id) const;
  void erase(std::uint64_t stream_id) { routes_.erase(stream_id); }
  std::size_t size() const { return routes_.size(); }

 private:
  std::uint32_t nodes_;
  std::unordered_map<std::uint64_t, std::shared_ptr<const StreamRoute>> routes_;
};

}  // namespace tosec::svm
