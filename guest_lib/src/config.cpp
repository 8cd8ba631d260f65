#include "config.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "real_calls.h"

namespace tosec::guest {

namespace {

Config load() {
  Config c;
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v != nullptr ? std::string(v) : std::string();
  };
  if (env("TOSEC_OFFLOAD") == "none") c.offload = false;
  c.ivshmem_socket = env("TOSEC_IVSHMEM_SOCKET");
  c.toe_socket = env("TOSEC_TOE_SOCKET");
  if (const std::string v = env("TOSEC_IVSHMEM_VECTORS"); !v.empty()) {
    const long n = std::strtol(v.c_str(), nullptr, 10);
    if (n >= 1 && n <= 64) c.ivshmem_vectors = static_cast<unsigned>(n);
  }
  if (const std::string v = env("TOSEC_SPIN_NS"); !v.empty()) {
    if (const auto n = parse_spin_ns(v)) {
      c.spin_ns = *n;
    } else {
      const std::string m = "tosec: TOSEC_SPIN_NS ignored: \"" + v +
                            "\" is not a number of nanoseconds in [0, 1000000000]\n";
      (void)!real().write(2, m.data(), m.size());
    }
  }
  const std::string lvl = env("TOSEC_LOG");
  if (lvl == "info") c.log = LogLevel::kInfo;
  if (lvl == "debug") c.log = LogLevel::kDebug;
  const char* ex = std::getenv("TOSEC_EXCLUDE");
  auto parsed = ExclusionPolicy::parse(ex != nullptr ? ex : "port:53");
  if (parsed) {
    c.exclude = std::move(*parsed);
  } else {
    // A typo must not silently offload what the operator meant to keep on the kernel: say so.
    const std::string m = "tosec: TOSEC_EXCLUDE ignored: " + parsed.error().message + "\n";
    (void)!real().write(2, m.data(), m.size());
  }
  return c;
}

}  // namespace

std::optional<std::int64_t> parse_spin_ns(const std::string& v) {
  if (v.empty() || v.front() < '0' || v.front() > '9') return std::nullopt;  // no sign, no space
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || n > Config::kMaxSpinNs) return std::nullopt;
  return n;
}

const Config& config() {
  static const Config c = load();
  return c;
}

void log(LogLevel level, const std::string& message) {
  if (!log_enabled(level)) return;
  const std::string line = "tosec[" + std::to_string(::getpid()) + "]: " + message + "\n";
  (void)!real().write(2, line.data(), line.size());
}

}  // namespace tosec::guest
