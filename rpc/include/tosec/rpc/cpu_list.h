// CPU lists in the kernel's "cpulist" syntax ("1", "0,2", "2-5,8": as in taskset -c, isolcpus
// and libvirt's cpuset), for the operator's choice of CPUs for the TOE's worker threads. One
// parser for the CLI's config check and the TOE's command line, so both refuse the same text
// with the same words.
#pragma once

#include <sched.h>

#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/status.h"

namespace tosec::rpc {

// Largest CPU number a cpu_set_t holds, plus one.
inline constexpr unsigned kMaxCpus = CPU_SETSIZE;

// The CPUs named by `text`, ascending and without repeats. EINVAL with a message naming the
// bad part: empty text or item, not a number, a range whose end is below its start, a CPU at or
// above kMaxCpus.
Result<std::vector<unsigned>> parse_cpu_list(std::string_view text);

// The list back in cpulist syntax, ranges folded ("0-2,5"): for logs and status.
std::string format_cpu_list(const std::vector<unsigned>& cpus);

// The CPUs of a kernel CPU set, ascending (e.g. what sched_getaffinity returned).
std::vector<unsigned> cpus_in(const cpu_set_t& set);

// The CPUs the calling thread may run on (its sched_getaffinity), ascending; empty if the kernel
// does not say.
std::vector<unsigned> thread_cpus();

// The CPU of the index-th TOE worker (or TOVM vCPU, or per-guest TOE) in a list the operator
// gave: round robin, index i on cpus[i % size]. `cpus` must not be empty.
inline unsigned cpu_for(std::size_t index, const std::vector<unsigned>& cpus) {
  return cpus[index % cpus.size()];
}

}  // namespace tosec::rpc
