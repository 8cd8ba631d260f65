// `tosec run`: runs a command as a guest application under the shim, on a platform started by
// `tosec up` if one runs for the guest, else on an embedded platform that lives exactly as long
// as the command (private runtime dir under /tmp, removed afterwards).
//
// Contract: the command's stdin/stdout/stderr are the user's; SIGINT/SIGTERM/SIGHUP sent to
// `tosec` (by kill, not by the terminal, which already signals the command's process group) are
// forwarded to the command; the exit code is the command's (128 + signal if it was killed),
// 125 if the platform could not be brought up, 126/127 if the command cannot be executed /
// was not found. The embedded platform's processes get PR_SET_PDEATHSIG so they never outlive
// `tosec`, even if it is SIGKILLed.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tosec/cli/config.h"

namespace tosec::cli {

inline constexpr int kExitPlatformError = 125;
inline constexpr int kExitCannotExecute = 126;
inline constexpr int kExitNotFound = 127;

struct RunOptions {
  std::optional<std::string> guest;  // --guest
  std::vector<std::string> exclude;  // --exclude (added to the guest's list)
  bool config_given = false;         // -c was given (else cfg is the built-in default)
  bool embedded = false;             // --embedded: never use a `tosec up` platform
  bool keep_runtime_dir = false;     // --keep: keep the embedded runtime dir (logs)
  std::optional<std::string> chain;  // --chain ids,waf+av (embedded platform only)
  std::string fail = "closed";       // --fail closed|open, for --chain
  std::string alert_log;             // --alerts FILE: where SVMs append alert lines
  std::vector<std::string> command;
};

// Runs the command; returns tosec's exit code. Messages go to stderr.
int run_command(const Config& cfg, const RunOptions& opts);

}  // namespace tosec::cli
