// Test helper: an HttpEvents sink that records every event as a line of text, with body chunks
// merged per transaction (so a split feed and a whole feed record the same thing).
#pragma once

#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/svm/engines/http_stream.h"

namespace tosec::svm::http::testing {

inline std::span<const std::byte> bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

inline StreamInfo client_stream() {
  StreamInfo info;
  info.stream_id = 1;
  info.local.family = 2;  // AF_INET
  info.local.addr[0] = 10;
  info.local.addr[3] = 2;
  info.local.port = 40000;
  info.remote.family = 2;
  info.remote.addr[0] = 10;
  info.remote.addr[3] = 1;
  info.remote.port = 80;
  info.guest_is_client = true;
  return info;
}

class RecordingEvents : public HttpEvents {
 public:
  std::vector<std::string> events;  // in order; bodies appear as one "...body" line at complete
  std::map<std::uint64_t, std::string> request_bodies;
  std::map<std::uint64_t, std::string> response_bodies;
  std::vector<std::string> anomalies;
  int fatal_anomalies = 0;

  void on_request_line(std::uint64_t tx, const RequestLine& l) override {
    add(tx, "req_line " + s(l.method) + " " + s(l.uri) + " path=" + s(l.path) +
                " query=" + s(l.query) + " v=" + s(l.version));
  }
  void on_request_header(std::uint64_t tx, std::string_view n, std::string_view v) override {
    add(tx, "req_hdr " + s(n) + ": " + s(v));
  }
  void on_request_headers_end(std::uint64_t tx) override { add(tx, "req_hdrs_end"); }
  void on_request_body(std::uint64_t tx, std::span<const std::byte> c) override {
    request_bodies[tx].append(reinterpret_cast<const char*>(c.data()), c.size());
  }
  void on_request_complete(std::uint64_t tx) override {
    if (request_bodies.count(tx) != 0) add(tx, "req_body " + request_bodies[tx]);
    add(tx, "req_done");
  }
  void on_response_line(std::uint64_t tx, const ResponseLine& l) override {
    add(tx, "res_line " + std::to_string(l.status) + " v=" + s(l.version) + " " + s(l.reason));
  }
  void on_response_header(std::uint64_t tx, std::string_view n, std::string_view v) override {
    add(tx, "res_hdr " + s(n) + ": " + s(v));
  }
  void on_response_headers_end(std::uint64_t tx, std::string_view ct) override {
    add(tx, "res_hdrs_end ct=" + s(ct));
  }
  void on_response_body(std::uint64_t tx, std::span<const std::byte> c) override {
    response_bodies[tx].append(reinterpret_cast<const char*>(c.data()), c.size());
  }
  void on_response_complete(std::uint64_t tx) override {
    if (response_bodies.count(tx) != 0) add(tx, "res_body " + response_bodies[tx]);
    add(tx, "res_done");
  }
  void on_anomaly(const Anomaly& a) override {
    anomalies.push_back(std::string(a.side == Side::kRequest ? "req " : "res ") +
                        (a.fatal ? "fatal " : "") + s(a.message));
    if (a.fatal) ++fatal_anomalies;
  }

  bool has(const std::string& line) const {
    for (const auto& e : events) {
      if (e == line) return true;
    }
    return false;
  }

 private:
  static std::string s(std::string_view v) { return std::string(v); }
  void add(std::uint64_t tx, std::string e) {
    events.push_back(std::to_string(tx) + " " + std::move(e));
  }
};

}  // namespace tosec::svm::http::testing
