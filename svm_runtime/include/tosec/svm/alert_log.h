// Alert log: one EVE-style JSON line per alert, appended by any number of SVM processes.
//
// Each line is built in memory and written with ONE write() on an O_APPEND descriptor, so lines
// of concurrent writers (threads or processes) never interleave. Format (docs/svm.md):
//   {"timestamp":"2026-11-22T05:35:28.123456+0000","event_type":"alert","flow_id":7,
//    "guest":"g0","stream_id":7,"src_ip":"10.0.0.2","src_port":40000,"dest_ip":"10.0.0.9",
//    "dest_port":80,"proto":"TCP","direction":"outbound","flow":"to_server","svm":"ids0",
//    "engine":"ids","alert":{"action":"blocked","signature_id":1001,"rule":"sid:1001",
//    "signature":"EVIL seen","category":"test"}}
// src/dest are in client -> server orientation (EVE's), whichever side the guest was.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm {

struct AlertRecord {
  std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
  const StreamInfo* stream = nullptr;  // required
  Direction direction = Direction::kOutbound;
  std::string_view svm;
  std::string_view engine;
  bool blocked = false;  // EVE alert.action: "blocked" or "allowed"
  std::string_view rule_id;
  std::string_view signature;
  std::string_view category;
};

// The JSON line (with its trailing newline) for `r`.
std::string format_alert_json(const AlertRecord& r);
// Numeric part of a rule id ("sid:1000001" -> 1000001, "942100" -> 942100; none -> 0).
std::uint64_t signature_number(std::string_view rule_id);
// JSON string escaping (quotes not included).
std::string json_escape(std::string_view s);
// Textual address of an endpoint ("10.0.0.1", "2001:db8::1"; "" when family is 0).
std::string endpoint_address(const Endpoint& e);

class AlertLog {
 public:
  // Opens (creating) `path` for appending; errors name the path.
  static rpc::Result<std::unique_ptr<AlertLog>> open(const std::string& path);

  // Appends one record in a single write(). Thread-safe. A failed or short write is counted
  // (errors()), never thrown: alerts must not stop inspection.
  void write(const AlertRecord& r);
  std::uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  std::uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }

 private:
  explicit AlertLog(rpc::UniqueFd fd) : fd_(std::move(fd)) {}
  rpc::UniqueFd fd_;
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace tosec::svm
