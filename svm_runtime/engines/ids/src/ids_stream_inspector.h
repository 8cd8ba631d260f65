// The per-stream part of the IDS engine. Header matching happens once, at open: each direction
// keeps a bitmap of the rules whose protocol/address/port/flow fit this stream (no bitmap when all
// of that direction's database fits), and a direction no rule fits is never scanned.
//
// Per direction, lazily on its first payload: one hs_stream_t and a StreamWindow. inspect() scans
// the payload in stream mode; a hit makes its rule a candidate, verified on the window now and,
// while it can still complete (CompiledRule::bounded/reach, or while the hit is in the window),
// again after each later payload. A rule fires at most once per stream direction. A pass rule
// that fires makes the whole stream pass from then on and drops the findings of that call.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "ids_thread_state.h"
#include "stream_window.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::ids {

class IdsStreamInspector final : public StreamInspector {
 public:
  IdsStreamInspector(std::shared_ptr<ThreadState> thread, const StreamInfo& info);
  ~IdsStreamInspector() override;
  IdsStreamInspector(const IdsStreamInspector&) = delete;
  IdsStreamInspector& operator=(const IdsStreamInspector&) = delete;

  Verdict inspect(const Payload& payload) override;
  Verdict finish() override;

 private:
  struct Pending {
    std::uint32_t rule = 0;
    std::uint64_t last_hit_end = 0;
  };
  struct DirectionState {
    bool active = false;        // at least one rule applies
    bool needs_window = false;  // some applicable rule needs more than its prefilter hit
    bool finished = false;
    const hs_database_t* db = nullptr;
    std::vector<std::uint64_t> eligible;  // empty: every rule of db applies
    std::vector<std::uint64_t> fired;     // sized on the first firing
    std::vector<Pending> pending;
    hs_stream_t* stream = nullptr;
    std::optional<StreamWindow> window;
  };

  Verdict process_hits(DirectionState& d, bool end_of_stream);
  void fire(DirectionState& d, std::uint32_t rule, Verdict& v);
  Verdict engine_error(const char* what, int code);

  std::shared_ptr<ThreadState> ts_;
  DirectionState dirs_[2];
  bool passed_ = false;
  bool failed_ = false;
};

}  // namespace tosec::svm::ids
