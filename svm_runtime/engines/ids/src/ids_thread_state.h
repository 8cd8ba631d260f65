// What one worker thread owns: a clone of the Hyperscan scratch, PCRE2 match state, the buffer a
// window is linearized into for verification, and the hit list the match callback fills. Shared
// (by shared_ptr) with the thread's stream inspectors, never with another thread.
#pragma once

#include <hs.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "compiled_rules.h"
#include "pcre_program.h"

namespace tosec::svm::ids {

struct PrefilterHit {
  std::uint32_t rule = 0;
  std::uint64_t end = 0;  // stream offset just past the hit
};

struct ThreadState {
  std::shared_ptr<const CompiledRules> rules;
  hs_scratch_t* scratch = nullptr;
  std::unique_ptr<PcreThreadState> pcre;
  std::unique_ptr<std::uint8_t[]> linear;  // options().window_bytes
  std::vector<PrefilterHit> hits;          // reserved up front: no allocation for a few hits

  ThreadState() = default;
  ThreadState(const ThreadState&) = delete;
  ThreadState& operator=(const ThreadState&) = delete;
  ~ThreadState() { hs_free_scratch(scratch); }
};

}  // namespace tosec::svm::ids
