// SharedTovm: one tosec-tovm process serving several guests (config `[tovm] mode = "shared"`,
// docs/config.md), with `[tovm] workers` threads; guest i of the config on worker i % workers.
//
// The guests' own platforms (GuestPlatform) still own their regions, inspection servers and
// SVMs; this owns only the TOE process. Order: every guest's start_regions(), then start(),
// then every guest's start_svms(). A restart of the shared TOE restarts it for every guest
// (their offloaded sockets are lost, as with a per-guest TOE restart).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "tosec/cli/config.h"
#include "tosec/cli/launch.h"
#include "tosec/cli/platform.h"
#include "tosec/rpc/status.h"

namespace tosec::cli {

// <runtime>/logs/tovm.log: the shared TOE's stdout+stderr.
std::string shared_tovm_log(const std::string& runtime_dir);

class SharedTovm {
 public:
  SharedTovm(Binaries bin, TovmConfig tovm, std::string log_path)
      : bin_(std::move(bin)), tovm_(std::move(tovm)), log_(std::move(log_path)) {}
  SharedTovm(const SharedTovm&) = delete;
  SharedTovm& operator=(const SharedTovm&) = delete;
  ~SharedTovm() { stop(); }

  // Starts the TOE for `guests` (their regions must be up) and waits for its ready line.
  rpc::Status start(const std::vector<GuestPlatform*>& guests,
                    std::chrono::milliseconds timeout = kReadyTimeout);
  // Stops it; the guests' sidecar and status sockets are removed by their platforms' stop.
  void stop();
  bool forget(pid_t pid);  // reaped elsewhere; true if it was ours
  pid_t pid() const { return pid_; }
  const std::string& log() const { return log_; }

 private:
  Binaries bin_;
  TovmConfig tovm_;
  std::string log_;
  pid_t pid_ = -1;
};

}  // namespace tosec::cli
