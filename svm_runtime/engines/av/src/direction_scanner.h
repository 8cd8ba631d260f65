// One direction of one stream as libclamav sees it: a window over the byte stream, or an object
// being accumulated (docs/engines/av.md, "From streams to objects").
//
// window: scan_window() scans tail + bytes, where the tail is the last `overlap_bytes` this
//   direction saw, so a signature of length L <= overlap + 1 that ends in `bytes` is inside the
//   scanned window however the stream was cut. Inputs larger than kMaxWindowChunk are scanned in
//   chunks the same way.
// object: add_to_object() accumulates; complete_object() scans the whole object and starts a new
//   one. Past max_object_bytes the over-limit policy applies once, then the rest of that object
//   is scanned by window, seeded with the end of the truncated object.
//
// After a detection that does not block (mode=detect) the direction restarts empty: the bytes
// seen so far have been reported once and are not reported again by the next overlapping scan.
#pragma once

#include <span>
#include <vector>

#include "av_shared.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::av {

class DirectionScanner {
 public:
  // Both must outlive the scanner (the owning inspector holds them).
  DirectionScanner(const AvShared& shared, ScanScratch& scratch);

  void scan_window(std::span<const std::byte> bytes, Verdict& v);
  void add_to_object(std::span<const std::byte> bytes, Verdict& v);
  void complete_object(Verdict& v);
  bool has_object() const { return !object_.empty() || over_limit_; }

 private:
  // Turns a libclamav outcome into a finding; returns true if the direction must restart.
  bool report(const ScanOutcome& outcome, Verdict& v) const;
  void keep_tail(std::span<const std::byte> seen);

  const AvShared* shared_;
  ScanScratch* scratch_;
  std::vector<std::byte> tail_;    // last overlap bytes (capacity reserved up front)
  std::vector<std::byte> object_;  // object mode: the object so far
  bool over_limit_ = false;        // past max_object_bytes: windowing the rest of this object
};

}  // namespace tosec::svm::av
