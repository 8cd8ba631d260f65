// The IDS engine: a Suricata/Snort rule subset compiled to Hyperscan in streaming mode, with
// PCRE2 (JIT) confirming what Hyperscan only prefilters. docs/engines/ids.md has the subset and
// its semantics.
//
// Contract (on top of svm/inspector.h):
//   * EngineConfig::rules_path is a rules file or a directory of *.rules files (sorted by name).
//     Every error names the file, the line and, when known, the sid.
//   * EngineConfig::options:
//       window_bytes     bytes of each stream direction retained for post-match verification
//                        (default 65536, 256 .. 16777216). Matches that need bytes older than
//                        this are not found.
//       verify_budget    candidate positions tried per rule verification (default 10000); a
//                        verification that runs out counts as "no match".
//       pcre_match_limit PCRE2 match limit per pcre call (default 100000); same.
//   * Findings carry rule_id "sid:<sid>", message = msg, category = classtype.
//   * Threads: the Engine is immutable after make_ids_engine(); each worker gets its own
//     EngineThread (a clone of the Hyperscan scratch); a StreamInspector is used only by the thread
//     that opened it. It holds the compiled rules and its thread's scratch by shared ownership, so
//     it may outlive the Engine and EngineThread objects.
#pragma once

#include <memory>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm {

rpc::Result<std::unique_ptr<Engine>> make_ids_engine(const EngineConfig& config);

}  // namespace tosec::svm
