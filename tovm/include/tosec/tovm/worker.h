// Worker: the event loop of one TOE thread, serving one or more guest sessions.
//
// One epoll set over, per session: the stack backend's event fd (kernel sockets), the session's
// ivshmem doorbell eventfd and server socket (peer joins and departures), the sidecar listener
// and connections, every end B (hang-up = last guest reference closed), the status socket; plus
// a stop eventfd and, optionally, a signalfd (SIGTERM/SIGINT: clean stop; SIGHUP: reload the
// topology file of every session, then on_hangup() tells the process's other workers). Tokens carry
// the session's number (guest_session.h), so an event goes straight to its session. Before sleeping
// the worker arms every session's request rings (consumer_sleeping, notifier.h's Dekker
// handshake), so a guest rings our doorbell only when we may be asleep. Before that it may
// busy-poll the rings and the epoll set (--spin-ns: toe_spin_policy()).
//
// Sessions never share state: a worker is the only thread that touches its sessions, so the
// data path has no locks. A process runs several workers side by side (tovm.h).
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tosec/rpc/notifier.h"
#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"
#include "tosec/tovm/guest_session.h"
#include "tosec/tovm/options.h"

namespace tosec::tovm {

// The worker's busy-poll policy for --spin-ns = max_ns (0: never spin): rpc::AdaptiveSpin's
// hit-rate rule: spin the whole budget while at least half of the recent spins caught an
// event, else sleep at once and probe with the whole budget every 16 idle periods (a busy-poll
// pays when the next event comes within the budget: socket calls, request/response; it wastes
// a core when events come just too late).
rpc::SpinPolicy toe_spin_policy(std::int64_t max_ns);

class Worker {
 public:
  // One guest. use_signalfd: take SIGTERM/SIGINT through a signalfd (the caller must have
  // blocked them).
  static rpc::Result<std::unique_ptr<Worker>> create(const TovmOptions& opts, bool use_signalfd);
  // Several guests on one thread; `index` is the worker's number in its process (status JSON).
  static rpc::Result<std::unique_ptr<Worker>> create(const std::vector<TovmOptions>& guests,
                                                     unsigned index, bool use_signalfd);
  ~Worker();

  // Runs until a signal or request_stop(). Closes everything before returning.
  rpc::Status run();
  // One loop iteration with a bounded sleep (tests drive the loop with this).
  void run_once(int max_timeout_ms);
  void request_stop();  // thread-safe
  // Thread-safe: the worker re-reads its sessions' topology files on its own thread, in its
  // next loop iteration (GuestSession::reload_topology).
  void request_reload();
  // Called on the worker's thread after a SIGHUP was handled here (TovmProcess: the others).
  void set_on_hangup(std::function<void()> f) { on_hangup_ = std::move(f); }
  void shutdown();

  GuestSession& session(std::size_t i = 0) { return *sessions_.at(i).session; }
  std::size_t session_count() const { return sessions_.size(); }

 private:
  struct Served {
    std::unique_ptr<GuestSession> session;
    rpc::UniqueFd status_listen;
    std::string status_path;
    bool armed = false;  // prepare_sleep() succeeded this iteration
  };

  Worker(rpc::SpinPolicy spin, unsigned index) : spin_(spin), index_(index) {}
  rpc::Status init(const std::vector<TovmOptions>& guests, bool use_signalfd);
  rpc::Status add_session(const TovmOptions& opts);
  void serve_status(Served& s);
  void dispatch(const epoll_event* evs, int n);  // hands epoll events to their sessions
  bool any_requests();
  void reload_topology();

  rpc::AdaptiveSpin spin_;
  unsigned index_;
  rpc::UniqueFd epoll_;
  rpc::UniqueFd signal_fd_;
  rpc::UniqueFd stop_fd_;  // eventfd for request_stop()
  std::vector<Served> sessions_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reload_{false};
  std::function<void()> on_hangup_;
};

}  // namespace tosec::tovm
