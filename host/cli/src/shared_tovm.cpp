#include "tosec/cli/shared_tovm.h"

#include <filesystem>

#include "tosec/cli/child_start.h"
#include "tosec/cli/process.h"

namespace tosec::cli {

std::string shared_tovm_log(const std::string& runtime_dir) {
  return runtime_dir + "/logs/tovm.log";
}

rpc::Status SharedTovm::start(const std::vector<GuestPlatform*>& guests,
                              std::chrono::milliseconds timeout) {
  if (guests.empty()) return rpc::Error{EINVAL, "a shared TOE needs at least one guest"};
  if (auto s = make_dirs(std::filesystem::path(log_).parent_path()); !s) return s;
  std::vector<std::string> argv = {bin_.tovm};
  for (auto& a : tovm_process_args(tovm_)) argv.push_back(std::move(a));
  for (GuestPlatform* g : guests) {
    auto group = g->prepare_tovm_group();
    if (!group)
      return rpc::Error{group.error().code,
                        "guest " + g->guest().name + ": " + group.error().message};
    for (auto& a : *group) argv.push_back(std::move(a));
  }
  long offset = 0;
  auto pid = spawn_logged(std::move(argv), log_, /*die_with_parent=*/true, &offset);
  if (!pid) return pid.error();
  pid_ = *pid;
  return wait_ready(
      &pid_, std::string("shared ") + kTovmName, std::string("print '") + kTovmReadyLine + "'",
      log_, offset, timeout, [&] { return log_has_line(log_, offset, kTovmReadyLine); },
      [&] { stop(); });
}

void SharedTovm::stop() { stop_processes({&pid_}, kStopGrace); }

bool SharedTovm::forget(pid_t pid) {
  if (pid <= 0 || pid != pid_) return false;
  pid_ = -1;
  return true;
}

}  // namespace tosec::cli
