// InspectionPlane: the TOE's side of the inspection region (what the TOVM links).
//
//   open_stream(info, chain)  -> StreamTableUpdate to every SVM of the chain (control rings),
//                                before any payload of the stream
//   submit(stream, dir, bytes) -> one copy into a pool chunk, a payload descriptor to the first
//                                step (last step for incoming), a token; ENOBUFS when the pool
//                                is full (the TOE stops reading: TCP backpressure)
//   poll(callbacks)            -> drains verdict rings, joins parallel groups, forwards to the
//                                next step, enforces deadlines and fail policies, calls
//                                on_deliver() for what the LAST step passed, in stream order,
//                                then releases the chunk; on_block() once per blocked stream
//   close_stream(stream)       -> stream end to every SVM of the chain once nothing is in
//                                flight (their finish() runs)
//
// Hand-off (decision 0006): a single-SVM step forwards straight to the next step's member(s);
// a parallel group's members each send their verdict here and the plane joins them (all must
// pass) before forwarding; the last step's verdict comes here. A block from any step comes here.
//
// Fail policy: an SVM is down when a payload misses its chain's deadline there (its heartbeat or
// its busy engine is older than the deadline), when its ivshmem peer departs (node_departed()),
// or when it retires. Fail-closed chains: every stream through it is blocked ("svm <name> down"),
// nothing of them is delivered afterwards, and new streams of the chain are refused (EHOSTUNREACH)
// until a new incarnation of that node announces itself. Fail-open chains: its step is bypassed
// for the affected streams, with an alert line ("svm down: bypass", action "allowed").
//
// Threading: one thread (the TOE worker owning the region) calls everything. Callbacks run inside
// poll() and may call submit()/close_stream().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/inspection_channel.h"
#include "tosec/rpc/notifier.h"
#include "tosec/rpc/status.h"
#include "tosec/svm/alert_log.h"
#include "tosec/svm/inspector.h"
#include "tosec/svm/latency_histogram.h"
#include "tosec/v1/control.pb.h"

namespace tosec::svm {

struct SvmNode {
  std::string name;        // as chains name it (Chain.steps)
  std::uint16_t node = 0;  // its node id in the region, [1, nodes)
  std::string engine;      // engine kind, for alert lines written by the plane
};

struct InspectionPlaneOptions {
  rpc::InspectionConfig region;
  std::vector<SvmNode> svms;
  std::string name = "tovm";                    // sender name in control messages
  std::uint64_t default_deadline_us = 500'000;  // per payload per step when Chain.deadline_us is 0
  AlertLog* alerts = nullptr;                   // fail-open bypass lines; may be null
  rpc::SpinPolicy spin{};
};

struct BlockInfo {
  std::uint64_t stream_id = 0;
  std::string reason;  // "blocked by svm ids0 (step 0): sid:1001 EVIL seen", "svm ids0 down"
  std::string svm;     // the SVM that blocked or went down
  std::string rule_id;
  std::string message;
};

struct PlaneCallbacks {
  // Bytes the last step passed, in stream order per direction; valid only during the call.
  std::function<void(std::uint64_t stream, Direction dir, std::span<const std::byte> bytes)>
      on_deliver;
  std::function<void(const BlockInfo& info)> on_block;
};

struct PlaneStats {
  std::uint64_t submitted = 0;
  std::uint64_t delivered = 0;
  std::uint64_t blocked_streams = 0;
  std::uint64_t dropped_payloads = 0;  // in flight or submitted after their stream was blocked
  std::uint64_t bad_descriptors = 0;   // verdicts that failed validation
  std::uint64_t stale_verdicts = 0;    // verdicts for tokens no longer awaited from that node
  std::uint64_t group_joins = 0;
  std::uint64_t deadline_misses = 0;
  std::uint64_t svm_down_events = 0;
  std::uint64_t bypasses = 0;         // streams that bypassed a down SVM (fail-open)
  std::uint64_t refused_streams = 0;  // open_stream refused by fail-closed
  std::uint32_t inflight = 0;
  std::uint32_t pool_free = 0;
};

// Per SVM of the mesh (docs/svm.md, "Metrics"). payloads/bytes: hand-offs of a payload to a
// segment of the chain containing the SVM. pass/alert/block and latency: verdicts that came back
// to the TOE from that SVM, timed from the segment's hand-off (a single-SVM step forwards
// straight to the next step, so only the last SVM of such a run, or the one that blocks, answers
// the TOE: the run's latency is counted there). No "alert" count: an alerting SVM passes the
// payload and writes its alert to its own alert log, which the TOE never sees.
struct SvmStepStats {
  std::string name;
  std::uint16_t node = 0;
  std::uint64_t payloads = 0;
  std::uint64_t bytes = 0;
  std::uint64_t pass = 0;
  std::uint64_t block = 0;
  LatencyHistogram latency;
};

// One of the TOE's mesh rings: "inspect.0-N" (payloads to node N), "inspect.N-0" (verdicts).
// backlog: descriptors waiting in the TOE for room in the ring (nothing is ever dropped).
struct RingStats {
  std::string name;
  std::uint32_t capacity = 0;
  std::uint32_t occupancy = 0;
  std::uint32_t backlog = 0;
};

class InspectionPlane {
 public:
  // Formats `region` (RegionLayout from inspection_region_layout(options.region), then the
  // channel) and attaches node 0. Doorbells: we wait on `own_vector` and announce
  // (self_peer, own_vector) in node 0's slot; SVMs are rung through `ringer`.
  static rpc::Result<std::unique_ptr<InspectionPlane>> create(
      std::span<std::byte> region, InspectionPlaneOptions options, rpc::DoorbellRinger& ringer,
      rpc::DoorbellWaiter& waiter, rpc::PeerId self_peer, rpc::Vector own_vector);
  virtual ~InspectionPlane() = default;

  // Adds/replaces/removes chains. Steps name SVMs of options.svms (EINVAL naming the unknown
  // one); a parallel group of one is still a group (its verdict comes back here). All or
  // nothing: a rejected update changes no chain. Streams already open keep the definition of
  // their chain as it was at open_stream (live changes apply to new streams only).
  virtual rpc::Status update_chains(const tosec::v1::ChainUpdate& update) = 0;

  // Starts inspecting a stream with chain `chain_id`. EEXIST, ENOENT (chain), EHOSTUNREACH
  // (fail-closed chain with an SVM down), EAGAIN (an SVM's control ring is full: retry).
  virtual rpc::Status open_stream(const StreamInfo& info, std::uint32_t chain_id) = 0;
  // Copies `bytes` (<= chunk size) into a chunk and starts it along the chain. Returns the
  // payload token. ENOBUFS: pool full (stop reading, retry after poll()). ECONNRESET: the
  // stream is blocked. ENOENT: unknown stream. EMSGSIZE: larger than a chunk.
  virtual rpc::Result<std::uint64_t> submit(std::uint64_t stream_id, Direction dir,
                                            std::span<const std::byte> bytes) = 0;
  // The stream ended: SVMs get a stream end once its last payload is out of the chain, then
  // the stream is forgotten. Payloads still in flight are delivered first (if they pass).
  virtual rpc::Status close_stream(std::uint64_t stream_id) = 0;

  // Does all pending work; returns the number of events handled (0: idle).
  virtual std::size_t poll(const PlaneCallbacks& callbacks) = 0;
  // Sleeps until a verdict may be waiting or timeout_ns passes (-1: forever). True if ready.
  virtual rpc::Result<bool> wait(std::int64_t timeout_ns) = 0;

  // For callers that multiplex the TOE's doorbell eventfd with others in epoll (the TOE
  // worker): the Dekker step of notifier.h. prepare_sleep() marks every verdict ring as
  // sleeping, fences and re-checks; false means work is ready (do not sleep; flags cleared).
  // after_wake() clears the flags. max_sleep_ms(): how long the caller may sleep before poll()
  // must run again for deadlines (-1: until a doorbell).
  virtual bool prepare_sleep() = 0;
  virtual void after_wake() = 0;
  virtual int max_sleep_ms() const = 0;
  // True if a verdict ring holds a descriptor for poll(). For a caller's busy-poll: while it spins
  // the verdict rings are not marked sleeping, so SVMs ring no doorbell and only this check sees
  // their verdicts.
  virtual bool has_work() = 0;

  // The ivshmem peer `peer` departed (IvshmemClient::on_peer_left): its nodes are down.
  virtual void node_departed(rpc::PeerId peer) = 0;
  // Declares a node down now (operator action, tests of the fail policies).
  virtual void mark_down(std::uint16_t node, const std::string& why) = 0;
  virtual bool node_up(std::uint16_t node) const = 0;

  virtual PlaneStats stats() const = 0;
  // Metrics (status JSON): per SVM of options.svms, and the TOE's mesh rings.
  virtual std::vector<SvmStepStats> svm_stats() const = 0;
  virtual std::vector<RingStats> ring_stats() = 0;
  virtual const rpc::InspectionChannel& channel() const = 0;
  // Whether a stream is known and not blocked.
  virtual bool stream_ok(std::uint64_t stream_id) const = 0;
  virtual std::string last_error() const = 0;
};

}  // namespace tosec::svm
