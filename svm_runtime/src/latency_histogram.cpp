#include "tosec/svm/latency_histogram.h"

#include <cstdio>

namespace tosec::svm {

std::string LatencyHistogram::json() const {
  std::string o = "{\"buckets\":[";
  for (std::size_t i = 0; i < kBuckets; ++i) {
    if (i != 0) o += ',';
    o += '[';
    o += i < kBoundsUs.size() ? std::to_string(kBoundsUs[i]) : std::string("\"+Inf\"");
    o += ',' + std::to_string(cumulative(i)) + ']';
  }
  char sum[32];
  std::snprintf(sum, sizeof sum, "%.3f", sum_us());
  o += "],\"sum\":";
  o += sum;
  o += ",\"count\":" + std::to_string(count_) + '}';
  return o;
}

}  // namespace tosec::svm
