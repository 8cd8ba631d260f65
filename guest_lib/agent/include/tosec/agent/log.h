// The agent's log: one line per event on stderr, prefixed "tosec-guest-agent: ".
#pragma once

#include <string>

namespace tosec::agent {

enum class Verbosity { kNormal, kDebug };
void set_verbosity(Verbosity v);
bool debug_enabled();
void log_line(const std::string& message);
inline void log_debug(const std::string& message) {
  if (debug_enabled()) log_line(message);
}

}  // namespace tosec::agent
