// Process-wide settings read once from the environment (see tosec.h for the variables), and the
// shim's diagnostics. Logging writes with the real write(2) to stderr and never allocates on
// the data path (messages are built only when the level is enabled).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "exclusion.h"

namespace tosec::guest {

enum class LogLevel { kError = 0, kInfo = 1, kDebug = 2 };

struct Config {
  bool offload = true;           // TOSEC_OFFLOAD != "none"
  std::string ivshmem_socket;    // TOSEC_IVSHMEM_SOCKET
  std::string toe_socket;        // TOSEC_TOE_SOCKET
  unsigned ivshmem_vectors = 1;  // TOSEC_IVSHMEM_VECTORS (must match the server's -n or less)
  LogLevel log = LogLevel::kError;
  // TOSEC_SPIN_NS: how long a blocking call spins on shared memory before it sleeps, at most
  // (adaptive, decision 0011). 0: sleep at once.
  std::int64_t spin_ns = kDefaultSpinNs;
  static constexpr std::int64_t kDefaultSpinNs = 200'000;
  static constexpr std::int64_t kMaxSpinNs = 1'000'000'000;
  ExclusionPolicy exclude;  // TOSEC_EXCLUDE (default: port:53)
};

// Reads the environment on first call.
const Config& config();

// A TOSEC_SPIN_NS value: decimal nanoseconds in [0, Config::kMaxSpinNs]; nullopt otherwise.
std::optional<std::int64_t> parse_spin_ns(const std::string& v);

void log(LogLevel level, const std::string& message);
inline bool log_enabled(LogLevel level) {
  return static_cast<int>(level) <= static_cast<int>(config().log);
}

}  // namespace tosec::guest
