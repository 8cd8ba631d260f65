// The "literal" engine: blocks or alerts on byte strings, across payload boundaries.
//
// Rules file, one rule a line ('#' starts a comment):
//   block <id> <text>      e.g.  block 1001 EVIL
//   alert <id> <text>      e.g.  alert 2001 curl/
// <text> is the rest of the line (C escapes \xNN, \n, \r, \t, \\ allowed). Matching is exact and
// case-sensitive, per direction, and finds strings split over several payloads (each direction
// keeps the last longest-pattern - 1 bytes). It is small on purpose: the runtime's tests and
// demos use it, and it shows what an engine needs (docs/porting-an-engine.md).
#pragma once

#include <memory>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm {

rpc::Result<std::unique_ptr<Engine>> make_literal_engine(const EngineConfig& config);

}  // namespace tosec::svm
