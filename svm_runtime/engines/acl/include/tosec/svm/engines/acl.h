// The "acl" engine: an address/port access list decided once per stream, at open_stream().
//
// Rules file (docs/engines/acl.md), one rule per line, first match wins, '#' starts a comment:
//   default deny
//   deny  tcp remote 10.1.0.0/16 port 22 direction out   msg "no ssh to the lab"
//   allow any local 192.168.0.0/24 rport 1000:2000
//   alert udp guest web1 remote 2001:db8::/32
// A denied stream's inspector blocks its first payload (finding rule_id "acl:<line>", category
// "acl"); an allowed stream's inspector does no per-payload work at all.
//
// Options: default = allow | deny (used when the file has no `default` line; built-in: allow),
//          mode = block | detect (detect turns deny into alert).
// rules_path is one rules file; errors name file:line and what is wrong.
#pragma once

#include <memory>

#include "tosec/rpc/status.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm {

rpc::Result<std::unique_ptr<Engine>> make_acl_engine(const EngineConfig& config);

}  // namespace tosec::svm
