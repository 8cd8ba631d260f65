// SvmRuntime: the SVM side of the inspection channel (the paper's SVM runtime, Fig. 2).
//
//   input rings ring[j][self] --> manager thread --(by stream id)--> worker 0..W-1
//   control ring ctl[self].down --^   (stream table)                  | Engine: StreamInspector
//                                                                     v
//              forward to the next step's SVM(s): ring[self][next]  or  verdict: ring[self][0]
//
// The manager waits on the node's doorbell vector with the spin-then-sleep Waiter over the
// sleeping flags of all its input rings, drains them, validates every descriptor, looks the
// stream up (draining the control ring first when it is unknown: the TOE published the entry
// before the payload) and queues the payload on worker stream_id % W, so one stream's payloads
// stay in order. Workers run the engine and produce into the mesh rings; each output ring has a
// mutex so the ring keeps a single producer at a time (SPSC holds). A payload of an unknown
// stream is dropped with a counted error and a block verdict to the TOE (fail safe).
//
// Threading: run() is the manager loop, on the caller's thread; it starts and joins the workers.
// stop() may be called from any thread (or a signal-driven flag).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/inspection_channel.h"
#include "tosec/rpc/notifier.h"
#include "tosec/rpc/status.h"
#include "tosec/svm/alert_log.h"
#include "tosec/svm/inspector.h"
#include "tosec/v1/control.pb.h"

namespace tosec::svm {

enum class InspectMode : std::uint8_t { kPrevent, kDetect };

struct SvmRuntimeOptions {
  std::uint16_t node = 1;    // our node id in the region, [1, nodes)
  std::string name = "svm";  // instance name (alerts, stats, node slot)
  // 0 (default): the manager thread inspects each payload itself, no hand-off (a futex wake-up
  // per payload costs more than an inspection on a few vCPUs: docs/evaluation/paper.md).
  // N > 0: N worker threads, streams spread by id; the manager stays free for control and
  // heartbeats while an engine scans long payloads (AV).
  unsigned workers = 0;
  InspectMode mode = InspectMode::kPrevent;  // detect: blocks become alerts ("allowed")
  AlertLog* alerts = nullptr;                // may be null: findings are then only counted
  rpc::SpinPolicy spin{};
  // The manager wakes at least this often to publish its heartbeat (the TOE's deadline check
  // reads it): keep it well under the chains' deadlines.
  std::int64_t heartbeat_ns = 10'000'000;
};

struct SvmCounters {
  std::atomic<std::uint64_t> payloads{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> verdict_pass{0};
  std::atomic<std::uint64_t> verdict_block{0};
  std::atomic<std::uint64_t> verdict_log{0};  // alert-only verdicts (and detect-mode blocks)
  std::atomic<std::uint64_t> alerts{0};
  std::atomic<std::uint64_t> bad_descriptors{0};
  std::atomic<std::uint64_t> unknown_streams{0};
  std::atomic<std::uint64_t> streams_total{0};
  std::atomic<std::uint64_t> forwards{0};
  std::atomic<std::uint64_t> duplicates{0};  // re-dispatched payloads already inspected
  std::atomic<std::uint64_t> control_errors{0};
};

class SvmRuntime {
 public:
  // Attaches our end of every ring (inputs: ring[j][node]; outputs: ring[node][j]) and our
  // control rings. `engine` must outlive the runtime. Doorbells: we wait on `own_vector` of
  // `waiter`, announce (self_peer, own_vector) in our node slot, and ring others through `ringer`.
  static rpc::Result<std::unique_ptr<SvmRuntime>> create(
      const rpc::InspectionChannel& channel, Engine& engine, rpc::DoorbellRinger& ringer,
      rpc::DoorbellWaiter& waiter, rpc::PeerId self_peer, rpc::Vector own_vector,
      SvmRuntimeOptions options);
  virtual ~SvmRuntime() = default;

  // Announces the node online and runs the manager loop until stop(); then retires the node.
  // Errors only for a broken region (a ring whose indices went wrong).
  virtual rpc::Status run() = 0;
  virtual void stop() = 0;
  // True once run() has announced the node and started its workers.
  virtual bool running() const = 0;

  virtual const SvmCounters& counters() const = 0;
  virtual tosec::v1::SvmStats stats() const = 0;
  // Last error seen (bad descriptor, bad control message), for logs; empty if none.
  virtual std::string last_error() const = 0;
};

}  // namespace tosec::svm
