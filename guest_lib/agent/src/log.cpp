#include "tosec/agent/log.h"

#include <unistd.h>

namespace tosec::agent {

namespace {
Verbosity g_verbosity = Verbosity::kNormal;
}

void set_verbosity(Verbosity v) { g_verbosity = v; }
bool debug_enabled() { return g_verbosity == Verbosity::kDebug; }

void log_line(const std::string& message) {
  // One write per line so lines of concurrent processes do not interleave mid-line.
  const std::string line = "tosec-guest-agent: " + message + "\n";
  (void)!::write(2, line.data(), line.size());
}

}  // namespace tosec::agent
