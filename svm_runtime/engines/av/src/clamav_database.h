// One compiled libclamav engine (cl_engine): the signatures of one av Engine, their limits and
// scratch directory. Loaded and compiled once, then immutable; scan() may be called from any
// number of threads at once (libclamav guarantees this for a compiled engine).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "av_options.h"
#include "scan_tmpdir.h"
#include "tosec/rpc/status.h"

struct cl_engine;

namespace tosec::svm::av {

struct ScanOutcome {
  enum class Kind : std::uint8_t { kClean, kVirus, kError };
  Kind kind = Kind::kClean;
  const char* name = nullptr;  // kVirus: signature name (owned by the engine, lives as long)
  std::string error;           // kError: cl_strerror() text and libclamav's own message
};

class ClamDatabase {
 public:
  // rules_path: one signature file, or a directory whose signature files (by extension: .ndb,
  // .hdb, .ldb, .yar, ...) are loaded in name order. Errors name the file and libclamav's reason.
  static rpc::Result<std::unique_ptr<ClamDatabase>> load(const std::string& rules_path,
                                                         const AvOptions& options);
  ~ClamDatabase();
  ClamDatabase(const ClamDatabase&) = delete;
  ClamDatabase& operator=(const ClamDatabase&) = delete;

  // Scans `object` as one whole file held in memory. Never throws; a libclamav failure is
  // returned as kError, including the failures libclamav only logs while still answering
  // CL_CLEAN (it does so when it cannot create its per-scan temp directory). Our code does not
  // allocate on the clean path (libclamav does, per scan).
  ScanOutcome scan(std::span<const std::byte> object) const;

  unsigned signatures() const { return signatures_; }
  std::size_t files() const { return files_; }

 private:
  ClamDatabase() = default;

  cl_engine* engine_ = nullptr;  // freed in the destructor body, before tmpdir_ goes
  std::shared_ptr<ScanTmpdir> tmpdir_;
  unsigned signatures_ = 0;
  std::size_t files_ = 0;
  std::uint32_t parse_ = 0;
};

}  // namespace tosec::svm::av
