// `tosec up` / `tosec down`: the background daemon of a platform, tosec-hostd (host/hostd/).
//
// `tosec up` forks and execs the daemon (double fork, setsid; its stdio goes to
// <runtime>/logs/supervisor.log) that
// holds an exclusive flock on <runtime>/supervisor.pid for its whole life: "a platform is
// running" means exactly "that lock is held", which survives pid reuse and stale files. The
// daemon starts every guest's ivshmem server and TOE, reports readiness (or the first error)
// back to `tosec up` through a pipe, then restarts any child that dies, with exponential backoff
// (250 ms doubling to 30 s; reset once a child stayed up 60 s), logging each event. SIGTERM or
// SIGINT stops every child (SIGTERM, SIGKILL after 5 s), removes sockets, shm objects and the
// pidfile; logs are kept.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tosec/cli/config.h"
#include "tosec/cli/launch.h"
#include "tosec/rpc/status.h"

namespace tosec::cli {

inline constexpr const char* kPidFileName = "supervisor.pid";
inline constexpr const char* kHostdName = "tosec-hostd";
// tosec-hostd's gRPC socket (HostControl), mode 0600.
inline constexpr const char* kHostdSocketName = "hostd.sock";

// The pid of the live supervisor of `runtime_dir`, if any.
std::optional<pid_t> live_supervisor(const std::string& runtime_dir);
// Guests that have a directory under <runtime_dir>/guests, sorted.
std::vector<std::string> platform_guests(const std::string& runtime_dir);
// The exclude list `tosec up` recorded for a guest (empty if none).
std::vector<std::string> platform_guest_exclude(const std::string& runtime_dir,
                                                const std::string& guest);
// The spin_ns `tosec up` recorded for a guest (-1 if none: the shim's default).
std::int64_t platform_guest_spin_ns(const std::string& runtime_dir, const std::string& guest);

// Starts tosec-hostd (next to the TOE binary) as a daemon and returns once every TOE is ready (or
// with the first error).
rpc::Status platform_up(const Config& cfg, const Binaries& bin);
// Stops the supervisor of `runtime_dir` and waits for it. *was_running tells whether it ran.
rpc::Status platform_down(const std::string& runtime_dir, bool* was_running);

}  // namespace tosec::cli
