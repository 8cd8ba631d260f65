// Starting a platform child and waiting until it is ready: the common steps of every role the
// CLI starts (ivshmem servers, TOEs, SVMs). A child runs in its own process group with stdin
// from /dev/null and stdout+stderr appended to its log after a header line; "ready" is a
// condition on the outside world (a line in the log, a socket that accepts).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "tosec/rpc/status.h"

namespace tosec::cli {

// Starts argv; *offset is where this run's output starts in the log.
rpc::Result<pid_t> spawn_logged(std::vector<std::string> argv, const std::string& log_path,
                                bool die_with_parent, long* offset);

// Waits until `ready()` holds for the child *pid, which logs to `log` from `offset`. On exit
// or timeout the error names the process (`what`) and quotes the end of its log; a timed-out
// child is stopped by `stop` (which resets *pid).
rpc::Status wait_ready(pid_t* pid, const std::string& what, const std::string& waiting_for,
                       const std::string& log, long offset, std::chrono::milliseconds timeout,
                       const std::function<bool()>& ready, const std::function<void()>& stop);

// A Unix stream socket at `path` accepts a connection (the server is listening).
bool socket_accepts(const std::string& path);
// `needle` is a whole line of the file at `path` after byte `offset`.
bool log_has_line(const std::string& path, long offset, const std::string& needle);

}  // namespace tosec::cli
