// Worker: the event loop of a TOE thread.
//
// One epoll set over: the stack backend's event fd (kernel sockets), our ivshmem doorbell
// eventfd, the ivshmem server socket (peer joins and departures), the sidecar listener and
// connections, every end B (hang-up = last guest reference closed), the status socket and a
// signalfd (SIGTERM/SIGINT: clean stop). Before sleeping it arms the request rings'
// consumer_sleeping flags (notifier.h's Dekker handshake), so a guest rings our doorbell only
// when we may be asleep. An optional spin (--spin-ns) polls the rings first.
//
// One tosec-tovm process serves one guest; its session is single-threaded and lives on one
// worker. (Guests stay independent by running in separate processes; --workers > 1 is accepted
// and reserved for a multi-guest TOVM, see docs/tovm.md.)
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"
#include "tosec/tovm/guest_session.h"
#include "tosec/tovm/options.h"

namespace tosec::tovm {

class Worker {
 public:
  // use_signalfd: take SIGTERM/SIGINT through a signalfd (the caller must have blocked them).
  static rpc::Result<std::unique_ptr<Worker>> create(const TovmOptions& opts, bool use_signalfd);
  ~Worker();

  // Runs until a signal or request_stop(). Closes everything before returning.
  rpc::Status run();
  // One loop iteration with a bounded sleep (tests drive the loop with this).
  void run_once(int max_timeout_ms);
  void request_stop();  // thread-safe
  void shutdown();

  GuestSession& session() { return *session_; }

 private:
  explicit Worker(const TovmOptions& opts) : opts_(opts) {}
  rpc::Status init(bool use_signalfd);
  void serve_status();

  TovmOptions opts_;
  rpc::UniqueFd epoll_;
  rpc::UniqueFd signal_fd_;
  rpc::UniqueFd stop_fd_;  // eventfd for request_stop()
  rpc::UniqueFd status_listen_;
  std::unique_ptr<GuestSession> session_;
  std::atomic<bool> stop_{false};
  bool progress_ = false;
};

}  // namespace tosec::tovm
