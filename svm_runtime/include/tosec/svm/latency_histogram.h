// LatencyHistogram: a fixed-bucket histogram of inspection latencies (hand-off to verdict), in
// the Prometheus style the TOE's status JSON exports (docs/svm.md, "Metrics").
//
// Bucket bounds are fixed microsecond values (1 us .. 10 ms, then +Inf) so that every TOE and
// every SVM step report comparable series and the hot path only increments one counter: no
// allocation, no lock (one thread, the TOE worker, records; the status writer runs on the same
// thread).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace tosec::svm {

class LatencyHistogram {
 public:
  // Upper bounds (inclusive, "le") in microseconds; the last bucket is +Inf.
  static constexpr std::array<std::uint64_t, 13> kBoundsUs = {1,   2,   5,    10,   20,   50,   100,
                                                              200, 500, 1000, 2000, 5000, 10000};
  static constexpr std::size_t kBuckets = kBoundsUs.size() + 1;

  // Index of the bucket that counts a latency of `ns` nanoseconds.
  static constexpr std::size_t bucket_of(std::uint64_t ns) {
    for (std::size_t i = 0; i < kBoundsUs.size(); ++i) {
      if (ns <= kBoundsUs[i] * 1000) return i;
    }
    return kBoundsUs.size();
  }

  void record(std::uint64_t ns) {
    ++counts_[bucket_of(ns)];
    sum_ns_ += ns;
    ++count_;
  }

  // Cumulative count of bucket i (observations <= its bound), as Prometheus exports it.
  std::uint64_t cumulative(std::size_t i) const {
    std::uint64_t c = 0;
    for (std::size_t j = 0; j <= i && j < kBuckets; ++j) c += counts_[j];
    return c;
  }
  std::uint64_t count() const { return count_; }
  double sum_us() const { return static_cast<double>(sum_ns_) / 1000.0; }

  // {"buckets":[[1,N],...,["+Inf",N]],"sum":X,"count":N} (cumulative buckets, sum in us).
  std::string json() const;

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t sum_ns_ = 0;
  std::uint64_t count_ = 0;
};

}  // namespace tosec::svm
