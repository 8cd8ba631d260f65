// `tosec alerts`: shows the alert log the SVMs append to (EVE-style JSON lines, docs/svm.md).
//
// One alert per line; a line that does not parse is shown verbatim with a marker, never dropped
// (the log is also read by operators' own tools, which must see the same lines).
#pragma once

#include <atomic>
#include <cstdio>
#include <string>

#include "tosec/rpc/status.h"

namespace tosec::cli {

// One alert line rendered for a terminal:
//   "2026-11-22T06:01:02.123456Z BLOCKED web waf 942100 \"SQL Injection ...\" 10.0.0.2:51000 ->
//    10.0.0.1:80 to_server"
std::string render_alert_line(const std::string& json_line);

struct AlertsOptions {
  std::string path;     // the alert log
  bool follow = false;  // keep reading appended lines until *stop
  bool raw = false;     // print the JSON lines as they are
};

// Prints the log's lines to `out`; with follow, polls for appended lines until *stop becomes
// true. A missing log is not an error without follow ("no alerts"); with follow, it is waited for.
rpc::Status show_alerts(const AlertsOptions& opts, std::FILE* out, const std::atomic<bool>* stop);

}  // namespace tosec::cli
