#include "av_stream_inspector.h"

namespace tosec::svm::av {

AvStreamInspector::AvStreamInspector(std::shared_ptr<const AvShared> shared,
                                     std::shared_ptr<ScanScratch> scratch)
    : shared_(std::move(shared)),
      scratch_(std::move(scratch)),
      dirs_{DirectionScanner(*shared_, *scratch_), DirectionScanner(*shared_, *scratch_)} {}

Verdict AvStreamInspector::inspect(const Payload& payload) {
  Verdict v;
  const auto index = static_cast<std::size_t>(payload.direction);
  if (shared_->options.scan == ScanMode::kObject) {
    // The peer answering means the other direction's message (request or response) is complete.
    DirectionScanner& other = dirs_[1 - index];
    if (other.has_object()) other.complete_object(v);
    if (v.blocked()) return v;
    dirs_[index].add_to_object(payload.bytes, v);
  } else {
    dirs_[index].scan_window(payload.bytes, v);
  }
  return v;
}

Verdict AvStreamInspector::finish() {
  Verdict v;
  if (shared_->options.scan != ScanMode::kObject) return v;  // windows were scanned already
  for (auto& d : dirs_) {
    d.complete_object(v);
    if (v.blocked()) break;
  }
  return v;
}

}  // namespace tosec::svm::av
