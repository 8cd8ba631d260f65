// EngineConfig::options of the WAF, parsed and checked once when the engine is built.
#pragma once

#include <cstddef>
#include <map>
#include <string>

#include "tosec/rpc/status.h"
#include "tosec/svm/engines/http_stream.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::waf {

struct WafOptions {
  bool detect_only = false;                    // mode = detect
  Action parse_error_action = Action::kBlock;  // parse_error = block | alert | pass
  http::Personality personality = http::Personality::kIds;
  // Requests in flight on one connection (pipelined, not yet answered). Each holds a
  // ModSecurity transaction, so the queue is bounded; past it the stream is blocked.
  std::size_t max_pipelined = 64;
};

// Unknown keys and bad values are errors that name the key and the value.
rpc::Result<WafOptions> parse_waf_options(const std::string& svm_name,
                                          const std::map<std::string, std::string>& options);

}  // namespace tosec::svm::waf
