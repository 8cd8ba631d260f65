// Child processes of the CLI and the supervisor: fork/execve with fd hygiene, and bounded stop.
//
// Contract: a spawned child starts with signal mask and dispositions reset, only fds 0-2 open
// (everything else is closed before exec, whether or not it was close-on-exec), optionally in
// its own process group (so a terminal's Ctrl-C reaches the application, not the platform: the
// CLI tears the platform down itself) and optionally with PR_SET_PDEATHSIG(SIGTERM), so a killed
// `tosec` never leaks a TOE. Exec failures are reported to the caller (errno through a
// close-on-exec pipe), not as a mysterious exit status 127. Single-threaded callers only
// (PDEATHSIG fires when the forking *thread* dies).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "tosec/rpc/status.h"

namespace tosec::cli {

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] is the program (searched in PATH if it has no '/')
  std::vector<std::string> env;   // "KEY=VALUE"
  int stdin_fd = 0;               // fds that become the child's 0, 1, 2
  int stdout_fd = 1;
  int stderr_fd = 2;
  bool new_process_group = false;
  bool die_with_parent = false;  // PR_SET_PDEATHSIG(SIGTERM)
};

// Forks and execs. On exec failure returns the errno (ENOENT, EACCES, ...) and reaps the child.
rpc::Result<pid_t> spawn(const SpawnSpec& spec);

// Sends SIGTERM to every pid > 0, waits up to `grace` for them, then SIGKILLs the rest; reaps
// all of them (they must be our children). Pids are set to -1.
void stop_processes(std::vector<pid_t*> pids, std::chrono::milliseconds grace);

// waitpid(pid, WNOHANG): true and *status if it exited.
bool try_reap(pid_t pid, int* status);

// "exited with status 3" / "was killed by signal 9 (Killed)".
std::string describe_wait_status(int status);

// Opens `path` for appending (creating it 0644), close-on-exec. -1 and errno on failure.
int open_log(const std::string& path);
// The last `lines` lines of `path` from byte `offset` on, each indented by two spaces.
std::string tail_file(const std::string& path, long offset, int lines);

}  // namespace tosec::cli
