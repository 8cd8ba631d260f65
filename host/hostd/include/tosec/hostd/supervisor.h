// The supervisor of a platform, run by tosec-hostd (docs/cli.md `tosec up`, docs/control-plane.md).
//
// It starts every guest's ivshmem server(s), the TOE (one shared, or one per guest: config
// [tovm] mode) and the SVMs of the guests' chains, and restarts any child that dies with
// exponential backoff (250 ms doubling to 30 s; reset once a child stayed up 60 s), logging each
// event on stderr (the daemon's log). A region server's death takes the TOE serving it down too
// (its doorbells died with the server), so the pair restarts, server first.
//
// Threading: the daemon's main thread runs loop(); the gRPC threads read roles() and change
// topologies. Every call that touches children must hold mutex() (loop() takes it around each
// reap/restart round, never while it sleeps).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tosec/cli/config.h"
#include "tosec/cli/launch.h"
#include "tosec/cli/platform.h"
#include "tosec/cli/shared_tovm.h"
#include "tosec/rpc/status.h"

namespace tosec::hostd {

// printf-style line on stderr with a UTC timestamp and "tosec-supervisor[pid]: ".
void log_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// One supervised process, for Status.
struct RoleInfo {
  std::string name;   // "web.ivshmem", "tovm" (shared) or "web.tovm", "web.svm.ids"
  std::string kind;   // "host" (ivshmem servers), "tovm", "svm"
  std::string state;  // "running", "restarting", "stopped"
  pid_t pid = 0;
  std::uint32_t restarts = 0;
  std::int64_t started_unix_ns = 0;
};

class Supervisor {
 public:
  Supervisor(const cli::Config& cfg, const cli::Binaries& bin);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  rpc::Status start_all();
  void stop_all();
  // Runs until SIGTERM/SIGINT. sfd: signalfd for SIGCHLD, SIGTERM, SIGINT, SIGHUP.
  void loop(int sfd);

  std::mutex& mutex() { return mu_; }
  // Under mutex():
  std::vector<RoleInfo> roles() const;
  bool degraded() const;  // a child is restarting
  std::vector<cli::GuestPlatform*> platforms();
  // The pid of the TOE serving `guest` (0 if it is down).
  pid_t tovm_pid(const std::string& guest) const;

 private:
  struct Restart;
  struct SupervisedGuest;
  std::vector<Restart*> restarts();
  void stop_tovm_of(SupervisedGuest& g);
  void reap();
  bool all_servers_up() const;
  void start_svms_of(SupervisedGuest& g);
  static bool run_restart(Restart& r, std::chrono::steady_clock::time_point now,
                          const std::string& failed, const std::function<rpc::Status()>& start);
  void run_due_restarts();

  const cli::Config& cfg_;
  bool shared_;
  std::vector<std::unique_ptr<SupervisedGuest>> guests_;
  std::unique_ptr<cli::SharedTovm> shared_tovm_;
  std::unique_ptr<Restart> shared_restart_;
  mutable std::mutex mu_;
};

}  // namespace tosec::hostd
