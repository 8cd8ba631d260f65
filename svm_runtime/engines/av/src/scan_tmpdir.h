// The directory libclamav writes scratch files into (it mkdir/rmdirs one per scan even for a
// memory scan): /dev/shm/tosec-av-<pid> by default, because on tmpfs that costs 25-45 us a scan
// instead of 90-130 us on ext4 (docs/engines/av.md). One directory per process and base, shared
// by every av Engine of the process and removed with the last of them.
#pragma once

#include <memory>
#include <string>

#include "tosec/rpc/status.h"

namespace tosec::svm::av {

class ScanTmpdir {
 public:
  // Creates (or shares) <base>/tosec-av-<pid>.
  static rpc::Result<std::shared_ptr<ScanTmpdir>> acquire(const std::string& base);
  ~ScanTmpdir();
  ScanTmpdir(const ScanTmpdir&) = delete;
  ScanTmpdir& operator=(const ScanTmpdir&) = delete;

  const std::string& path() const { return path_; }

 private:
  explicit ScanTmpdir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace tosec::svm::av
