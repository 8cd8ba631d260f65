#include "direction_scanner.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace tosec::svm::av {

DirectionScanner::DirectionScanner(const AvShared& shared, ScanScratch& scratch)
    : shared_(&shared), scratch_(&scratch) {
  // Reserved once per stream so the pass path never allocates for the tail.
  tail_.reserve(shared.options.overlap_bytes);
}

void DirectionScanner::scan_window(std::span<const std::byte> bytes, Verdict& v) {
  while (!bytes.empty()) {
    const auto chunk = bytes.first(std::min(bytes.size(), kMaxWindowChunk));
    bytes = bytes.subspan(chunk.size());
    std::span<const std::byte> window = chunk;
    if (!tail_.empty()) {
      // libclamav needs one contiguous buffer; the per-thread scratch grows to the largest
      // window once and is reused, so steady state does not allocate.
      auto& w = scratch_->window;
      w.resize(tail_.size() + chunk.size());
      std::memcpy(w.data(), tail_.data(), tail_.size());
      std::memcpy(w.data() + tail_.size(), chunk.data(), chunk.size());
      window = w;
    }
    if (report(shared_->db->scan(window), v)) {
      tail_.clear();
      if (v.blocked()) return;
      continue;
    }
    keep_tail(window);
  }
}

void DirectionScanner::keep_tail(std::span<const std::byte> seen) {
  // `seen` always ends with everything since the last tail (it is tail + chunk, or the chunk
  // alone when the tail was empty), so its last `overlap` bytes are the new tail.
  const std::size_t keep = std::min(shared_->options.overlap_bytes, seen.size());
  tail_.resize(keep);  // within the reserved capacity: no allocation
  std::memcpy(tail_.data(), seen.data() + (seen.size() - keep), keep);
}

void DirectionScanner::add_to_object(std::span<const std::byte> bytes, Verdict& v) {
  const AvOptions& o = shared_->options;
  if (over_limit_) {
    scan_window(bytes, v);
    return;
  }
  if (object_.size() + bytes.size() <= o.max_object_bytes) {
    object_.insert(object_.end(), bytes.begin(), bytes.end());
    return;
  }
  // Over the limit: scan what fits as a (truncated) object, apply the policy once, then keep
  // finding body signatures in the rest with the window scanner, seeded with the object's end.
  const std::size_t fits = o.max_object_bytes - object_.size();
  object_.insert(object_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(fits));
  const bool restart = report(shared_->db->scan(object_), v);
  v.add(Finding{o.on_over_limit, "av:over-limit",
                "object larger than max_object_bytes (" + std::to_string(o.max_object_bytes) +
                    "): scanned whole up to the limit, the rest by window",
                "av"});
  if (v.blocked()) return;
  tail_.clear();
  if (!restart) keep_tail(object_);
  object_.clear();
  object_.shrink_to_fit();  // do not keep a max-sized buffer per idle stream
  over_limit_ = true;
  scan_window(bytes.subspan(fits), v);
}

void DirectionScanner::complete_object(Verdict& v) {
  if (!object_.empty()) report(shared_->db->scan(object_), v);
  object_.clear();
  // Keep a small buffer for the next message on this stream, not one of a large object.
  if (object_.capacity() > (64u << 10)) object_.shrink_to_fit();
  tail_.clear();
  over_limit_ = false;
}

bool DirectionScanner::report(const ScanOutcome& outcome, Verdict& v) const {
  switch (outcome.kind) {
    case ScanOutcome::Kind::kClean:
      return false;
    case ScanOutcome::Kind::kVirus: {
      std::string name = outcome.name != nullptr ? outcome.name : "unknown";
      std::string message = "virus found: " + name;
      v.add(Finding{shared_->options.on_virus, std::move(name), std::move(message), "malware"});
      return true;
    }
    case ScanOutcome::Kind::kError:
      // Fail visible, not closed: an engine hiccup (timeout, limits, tmpdir full) must not kill
      // every stream, but it must be seen.
      v.add(Finding{Action::kAlert, "av:scan-error", "scan error: " + outcome.error, "av"});
      return false;
  }
  return false;
}

}  // namespace tosec::svm::av
