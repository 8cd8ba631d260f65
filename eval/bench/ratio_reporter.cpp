#include "ratio_reporter.h"

namespace tosec::eval {

void RatioReporter::ReportRuns(const std::vector<Run>& runs) {
  ConsoleReporter::ReportRuns(runs);
  for (const auto& r : runs) {
    if (r.run_type == Run::RT_Iteration && !r.error_occurred) runs_[r.benchmark_name()] = r;
  }
}

double RatioReporter::ns_per_iter(const std::string& name) const {
  auto it = runs_.find(name);
  if (it == runs_.end() || it->second.iterations == 0) return -1;
  // GetAdjustedRealTime() is in the run's time unit; convert to ns.
  return it->second.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(it->second.time_unit) *
         1e9;
}

double RatioReporter::counter(const std::string& name, const std::string& c) const {
  auto it = runs_.find(name);
  if (it == runs_.end()) return -1;
  auto ct = it->second.counters.find(c);
  return ct == it->second.counters.end() ? -1 : static_cast<double>(ct->second);
}

}  // namespace tosec::eval
