// The WAF engine: libmodsecurity v3 with the OWASP Core Rule Set, fed by the HTTP stream parser.
//
// Engine       one modsecurity::ModSecurity + RulesSet, loaded once from EngineConfig::rules_path
//              (a ModSecurity conf, e.g. examples/rules/waf/waf.conf; parser errors name the file
//              and line), and the shared libhtp configuration.
// EngineThread per worker; holds nothing that another thread touches.
// Inspector    per TCP connection: a libhtp connection parser and one modsecurity::Transaction
//              per HTTP request still in flight (pipelined requests queue up; responses pair with
//              requests in order).
//
// Verdicts: a ModSecurity intervention blocks the stream (Action::kBlock) from the inspect() call
// whose bytes completed the phase that decided it. Findings carry the CRS rule ids that matched
// (for example 942100 and the disruptive 949110) and the rule messages.
//
// EngineConfig::options (all optional):
//   mode        = block | detect   detect: report what would be blocked as kAlert, never block
//                                  (as SecRuleEngine DetectionOnly in the conf does)
//   parse_error = block | alert | pass   what a stream libhtp cannot parse gets (default block:
//                                  a WAF that cannot read a request cannot vouch for it)
//   personality = ids | apache2 | iis7 | minimal   libhtp's server personality (default ids)
#pragma once

#include <memory>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm {

rpc::Result<std::unique_ptr<Engine>> make_waf_engine(const EngineConfig& config);

}  // namespace tosec::svm
