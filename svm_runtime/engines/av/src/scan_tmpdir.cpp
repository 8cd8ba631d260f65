#include "scan_tmpdir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <mutex>

namespace tosec::svm::av {
namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
// base -> the live directory for it; weak so the last Engine's release removes it.
std::map<std::string, std::weak_ptr<ScanTmpdir>>& registry() {
  static std::map<std::string, std::weak_ptr<ScanTmpdir>> r;
  return r;
}

}  // namespace

rpc::Result<std::shared_ptr<ScanTmpdir>> ScanTmpdir::acquire(const std::string& base) {
  std::lock_guard lock(registry_mutex());
  auto& slot = registry()[base];
  if (auto live = slot.lock()) return live;
  std::string path = base + "/tosec-av-" + std::to_string(::getpid());
  // 0700: scratch files are pieces of guests' traffic.
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return rpc::errno_error("av tmpdir mkdir(" + path + ")");
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return rpc::errno_error("av tmpdir stat(" + path + ")");
  if (!S_ISDIR(st.st_mode)) return rpc::Error{ENOTDIR, "av tmpdir " + path + ": not a directory"};
  std::shared_ptr<ScanTmpdir> dir(new ScanTmpdir(std::move(path)));
  slot = dir;
  return dir;
}

ScanTmpdir::~ScanTmpdir() {
  // A concurrent acquire() may already have re-registered the same path (it saw the weak pointer
  // expire); then the directory is in use again and stays.
  std::lock_guard lock(registry_mutex());
  for (const auto& [base, weak] : registry()) {
    if (auto live = weak.lock(); live && live->path_ == path_) return;
  }
  // libclamav removes its per-scan directories; remove_all also clears what a crashed scan left.
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace tosec::svm::av
