#include "wait_stats.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "real_calls.h"

namespace tosec::guest {

WaitStats& wait_stats() {
  static WaitStats s;  // trivially destructible counters: safe to read in the exit handler
  return s;
}

namespace {

__attribute__((destructor)) void print_wait_stats() {
  const char* v = std::getenv("TOSEC_STATS");
  if (v == nullptr || std::strcmp(v, "1") != 0) return;
  const WaitStats& s = wait_stats();
  auto n = [](const std::atomic<std::uint64_t>& c) {
    return static_cast<unsigned long long>(c.load(std::memory_order_relaxed));
  };
  char line[400];
  const int len = std::snprintf(
      line, sizeof line,
      "tosec[%d]: stats: read waits %llu (spun %llu, slept %llu), write waits %llu (spun %llu, "
      "slept %llu), connect waits %llu (spun %llu, slept %llu), calls waited %llu (spun %llu, "
      "slept %llu)\n",
      static_cast<int>(::getpid()), n(s.read.waits), n(s.read.spun), n(s.read.slept),
      n(s.write.waits), n(s.write.spun), n(s.write.slept), n(s.connect.waits), n(s.connect.spun),
      n(s.connect.slept), n(s.call.waits), n(s.call.spun), n(s.call.slept));
  if (len > 0) (void)!real().write(2, line, static_cast<std::size_t>(len));
}

}  // namespace
}  // namespace tosec::guest
