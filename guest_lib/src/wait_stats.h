// How this process's blocking calls waited: answered at once, by a spin, or by sleeping. On
// virtual CPUs a sleep (and the wake-up after it) is what a round trip costs, so these counters
// say where latency goes (decision 0007). TOSEC_STATS=1 prints them to stderr at exit, one line:
//   tosec[PID]: stats: read waits N (spun N, slept N), write waits ..., connect waits ...,
//   calls ... (spun, slept)
#pragma once

#include <atomic>
#include <cstdint>

namespace tosec::guest {

struct WaitCounters {
  std::atomic<std::uint64_t> waits{0};
  std::atomic<std::uint64_t> spun{0};   // the condition came while spinning
  std::atomic<std::uint64_t> slept{0};  // blocked in ppoll / on the lane's doorbell
};

struct WaitStats {
  WaitCounters read;     // blocking recv/accept on a placeholder
  WaitCounters write;    // blocking send (credit), or a connect that had to sleep, on A
  WaitCounters connect;  // blocking connect: the spin on the slot (slept: it went on to sleep)
  WaitCounters call;     // completions of synchronous socket calls (socket, bind, ...)
};

WaitStats& wait_stats();

}  // namespace tosec::guest
