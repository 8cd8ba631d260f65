// What the av engine's layers share: the immutable engine state (one per Engine, read by all
// threads) and the per-thread scratch buffer.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "av_options.h"
#include "clamav_database.h"

namespace tosec::svm::av {

// Windows are never larger than overlap + this (bigger payloads are scanned in chunks).
inline constexpr std::size_t kMaxWindowChunk = 1 << 20;

struct AvShared {
  AvOptions options;
  std::unique_ptr<ClamDatabase> db;
};

// Per worker thread: the contiguous buffer a window is assembled in before libclamav reads it.
// Used by one inspect() at a time (all of a thread's inspectors run on that thread).
struct ScanScratch {
  std::vector<std::byte> window;
};

}  // namespace tosec::svm::av
