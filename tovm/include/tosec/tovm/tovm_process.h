// TovmProcess: one tosec-tovm process, its worker threads and the guests assigned to them.
//
// Guest i of the command line is served by worker i % W, W = min(--workers, guests): a guest's
// session lives on exactly one thread for its whole life (no locks on the data path), and a busy
// guest only slows the guests that share its worker. Worker 0 runs on the calling thread and
// takes SIGTERM/SIGINT/SIGHUP through a signalfd; when it stops, the others are stopped and
// joined. SIGHUP: every worker re-reads its guests' topology files (docs/tovm.md, "Reload").
// With --cpus, worker i runs only on CPU cpus[i % size] (docs/tovm.md, "Threads"): the
// operator's way to give the TOE cores of its own, away from guests and peers.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "tosec/rpc/status.h"
#include "tosec/tovm/options.h"
#include "tosec/tovm/worker.h"

namespace tosec::tovm {

// Which worker serves guest `guest_index` (the assignment rule above).
constexpr unsigned worker_of(std::size_t guest_index, unsigned workers) {
  return static_cast<unsigned>(guest_index % workers);
}

class TovmProcess {
 public:
  // Creates every worker and every guest session (regions formatted, sidecars listening).
  // SIGTERM and SIGINT must be blocked in the calling thread before (the workers inherit it).
  // With --cpus, first checks that the kernel lets this process run on each CPU of the list
  // (EINVAL naming the CPU otherwise) and pins the calling thread (worker 0) to its CPU.
  static rpc::Result<std::unique_ptr<TovmProcess>> create(const TovmCommandLine& cl);
  ~TovmProcess();

  // Runs worker 0 here and the others on their threads until a signal; then stops and joins all.
  // on_started (main prints "ready") runs once every worker thread exists and is on its CPU,
  // before worker 0 serves anything. A worker thread that cannot be started: an error, after the
  // ones already started are stopped and joined.
  rpc::Status run(const std::function<void()>& on_started = {});
  void request_stop() { workers_.front()->request_stop(); }  // thread-safe: run() then returns
  unsigned worker_count() const { return static_cast<unsigned>(workers_.size()); }

 private:
  TovmProcess() = default;
  void stop_and_join_others();  // workers 1..n: stopped, their threads joined
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::vector<unsigned> cpus_;  // --cpus; empty: no pinning
};

}  // namespace tosec::tovm
