// A console reporter that also remembers each benchmark's time, so main() can print ratios
// against a baseline measured in the same run (machines here are noisy: only same-run ratios
// mean anything).
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <string>

namespace tosec::eval {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override;
  // Real time per iteration in ns of the run called `name` (exact benchmark name), or -1.
  double ns_per_iter(const std::string& name) const;
  double counter(const std::string& name, const std::string& counter) const;

 private:
  std::map<std::string, Run> runs_;
};

}  // namespace tosec::eval
