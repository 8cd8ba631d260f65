// Command line of tosec-tovm (docs/tovm.md). Parsed with getopt_long; errors name the flag.
#pragma once

#include <cstdint>
#include <string>

#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/status.h"

namespace tosec::tovm {

enum class LogLevel { kError = 0, kInfo = 1, kDebug = 2 };

struct TovmOptions {
  std::string guest;    // --guest NAME (required)
  std::string ivshmem;  // --ivshmem SOCKET (required)
  std::string sidecar;  // --sidecar PATH (required)
  std::string status;   // --status PATH (optional)
  // Inspection (docs/svm.md): the inspection region's ivshmem server and the topology file the
  // CLI wrote; both or neither. alert_log receives the TOE's own alert lines (fail-open).
  std::string inspect_ivshmem;
  std::string topology;
  std::string alert_log;
  rpc::GuestChannelConfig channel;
  unsigned workers = 1;
  std::int64_t spin_ns = 0;  // busy-poll budget before sleeping in epoll_wait
  LogLevel log_level = LogLevel::kInfo;
  bool help = false;
};

rpc::Result<TovmOptions> parse_tovm_options(int argc, char* const argv[]);
std::string tovm_usage(const char* prog);

}  // namespace tosec::tovm
