// Command line of tosec-tovm (docs/tovm.md). Parsed with getopt_long; errors name the flag.
//
// One process serves one or more guests. Each `--guest NAME` opens a guest group: the per-guest
// flags after it (--ivshmem, --sidecar, --status, the channel geometry, inspection) belong to
// that guest; geometry flags before the first --guest are defaults for every guest. --workers,
// --cpus, --spin-ns and --log-level are process-wide wherever they stand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/status.h"

namespace tosec::tovm {

enum class LogLevel { kError = 0, kInfo = 1, kDebug = 2 };

// The options of one guest's session (and the process-wide ones, copied into every guest).
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
  // --vm-agent: the guest is a VM whose in-guest agent holds the placeholders (decision 0008):
  // the last lane is the agent lane (rpc/agent_lane.h), never handed out by the sidecar.
  bool vm_agent = false;
  unsigned workers = 1;
  std::int64_t spin_ns = 0;  // busy-poll budget before sleeping in epoll_wait
  LogLevel log_level = LogLevel::kInfo;
  bool help = false;
};

// The whole command line: every guest group, in order.
struct TovmCommandLine {
  std::vector<TovmOptions> guests;
  unsigned workers = 1;  // --workers: threads; guest i runs on worker i % workers
  // --cpus LIST (cpulist syntax, rpc/cpu_list.h): worker i runs only on CPU cpus[i % size];
  // empty: wherever the kernel schedules it.
  std::vector<unsigned> cpus;
  bool help = false;
};

rpc::Result<TovmCommandLine> parse_tovm_command_line(int argc, char* const argv[]);
// A command line with exactly one guest (tests, the single-guest callers).
rpc::Result<TovmOptions> parse_tovm_options(int argc, char* const argv[]);
std::string tovm_usage(const char* prog);

}  // namespace tosec::tovm
