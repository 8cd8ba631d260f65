#include "tosec/rpc/cpu_list.h"

#include <algorithm>
#include <charconv>

namespace tosec::rpc {

namespace {

Result<unsigned> parse_cpu(std::string_view item, std::string_view text) {
  unsigned v = 0;
  const auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
  if (item.empty() || ec != std::errc{} || p != item.data() + item.size()) {
    return Error{EINVAL, "'" + std::string(item) + "' in CPU list '" + std::string(text) +
                             "' is not a CPU number"};
  }
  if (v >= kMaxCpus) {
    return Error{EINVAL, "CPU " + std::string(item) + " in CPU list '" + std::string(text) +
                             "' is out of range (at most " + std::to_string(kMaxCpus - 1) + ")"};
  }
  return v;
}

}  // namespace

Result<std::vector<unsigned>> parse_cpu_list(std::string_view text) {
  if (text.empty()) return Error{EINVAL, "empty CPU list"};
  std::vector<unsigned> cpus;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) {
      return Error{EINVAL, "empty item in CPU list '" + std::string(text) + "'"};
    }
    const std::size_t dash = item.find('-');
    auto first = parse_cpu(item.substr(0, dash), text);
    if (!first) return first.error();
    unsigned last = *first;
    if (dash != std::string_view::npos) {
      auto l = parse_cpu(item.substr(dash + 1), text);
      if (!l) return l.error();
      if (*l < *first) {
        return Error{EINVAL, "range '" + std::string(item) + "' in CPU list '" + std::string(text) +
                                 "' ends below its start"};
      }
      last = *l;
    }
    for (unsigned c = *first; c <= last; ++c) cpus.push_back(c);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::string format_cpu_list(const std::vector<unsigned>& cpus) {
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += '-' + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

std::vector<unsigned> cpus_in(const cpu_set_t& set) {
  std::vector<unsigned> cpus;
  for (unsigned c = 0; c < kMaxCpus; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

std::vector<unsigned> thread_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return {};
  return cpus_in(set);
}

}  // namespace tosec::rpc
