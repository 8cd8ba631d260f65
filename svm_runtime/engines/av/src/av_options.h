// The av engine's settings, parsed and checked once from EngineConfig::options.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::av {

// kHttp: HTTP/1.x bodies as objects (only when built with tosec_svm_http, see av.h).
enum class ScanMode : std::uint8_t { kWindow, kObject, kHttp };

struct AvOptions {
  Action on_virus = Action::kBlock;        // mode=block|detect
  ScanMode scan = ScanMode::kWindow;       // scan=window|object|http
  std::size_t overlap_bytes = 4096;        // window mode: bytes of the previous data re-scanned
  std::size_t max_object_bytes = 4 << 20;  // object mode: largest object buffered whole
  Action on_over_limit = Action::kAlert;   // over_limit=alert|block
  bool all_parsers = false;                // parsers=all|raw
  bool cache = false;                      // cache=on|off
  std::uint64_t max_filesize = 0;          // 0: derived from max_object_bytes
  std::uint64_t max_scansize = 0;          // 0: derived from max_filesize
  std::uint32_t max_scantime_ms = 10000;
  std::string tmpdir_base = "/dev/shm";
};

// Unknown keys and bad values are errors that name the key and the value.
rpc::Result<AvOptions> parse_av_options(const std::map<std::string, std::string>& options);

}  // namespace tosec::svm::av
