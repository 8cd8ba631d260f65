// `tosec status`: asks each guest's TOE for its status (one JSON object on its --status Unix
// stream socket, read until EOF) and renders a table or a combined JSON document.
//
// The TOE's JSON is trusted infrastructure output but is still parsed defensively: a missing or
// mistyped field shows as "-" in the table, never a crash. A tiny JSON reader lives here because
// the CLI needs nothing more (no third-party JSON dependency).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tosec/rpc/status.h"

namespace tosec::cli {

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;  // in document order

  const JsonValue* get(const std::string& key) const;  // objects only; nullptr if absent
};

rpc::Result<JsonValue> parse_json(const std::string& text);
std::string json_quote(const std::string& s);

// Connects to `socket_path`, reads until EOF (bounded by `timeout`).
rpc::Result<std::string> fetch_status(const std::string& socket_path,
                                      std::chrono::milliseconds timeout);

struct GuestStatus {
  std::string guest;
  std::string json;   // the TOE's object, verbatim (empty if unreachable)
  std::string error;  // why it is unreachable
};

// {"runtime_dir": ..., "supervisor_pid": N, "guests": [<TOE object> | {"guest":..,"error":..}]}
std::string render_status_json(const std::string& runtime_dir, long supervisor_pid,
                               const std::vector<GuestStatus>& guests);
// The human table.
std::string render_status_table(const std::string& runtime_dir, long supervisor_pid,
                                const std::vector<GuestStatus>& guests);

}  // namespace tosec::cli
