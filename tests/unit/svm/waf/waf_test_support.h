// Test helpers for the WAF engine: the real engine loaded once from examples/rules/waf/waf.conf
// (real libmodsecurity, real Debian CRS), and a client connection that feeds it payloads.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>

#include "tosec/svm/engines/waf.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::waf::testing {

inline std::unique_ptr<Engine> load_engine(std::map<std::string, std::string> options = {}) {
  EngineConfig cfg;
  cfg.svm_name = "waf-test";
  cfg.rules_path = TOSEC_WAF_CONF;
  cfg.options = std::move(options);
  auto engine = make_waf_engine(cfg);
  EXPECT_TRUE(engine.ok()) << (engine.ok() ? "" : engine.error().message);
  return engine.ok() ? std::move(*engine) : nullptr;
}

// The block-mode engine, shared by the tests of one process (CRS takes ~0.1 s to load).
inline Engine& shared_engine() {
  static std::unique_ptr<Engine> engine = load_engine();
  return *engine;
}

inline StreamInfo client_stream(std::uint64_t id = 1) {
  StreamInfo info;
  info.stream_id = id;
  info.guest = "web";
  info.local.family = 2;  // AF_INET 10.0.0.2:40000 -> 10.0.0.1:80
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

// One connection of a guest that is the HTTP client: to_server = outbound.
class Connection {
 public:
  Connection(EngineThread& thread, std::uint64_t id = 1)
      : info_(client_stream(id)), inspector_(thread.open_stream(info_)) {}

  Verdict to_server(std::string_view bytes) { return send(Direction::kOutbound, bytes); }
  Verdict to_client(std::string_view bytes) { return send(Direction::kInbound, bytes); }
  Verdict finish() { return inspector_->finish(); }

 private:
  Verdict send(Direction d, std::string_view bytes) {
    Payload p;
    p.direction = d;
    p.flow = info_.flow_of(d);
    std::uint64_t& offset = offsets_[static_cast<int>(d)];
    p.stream_offset = offset;
    p.bytes = {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()};
    offset += bytes.size();
    return inspector_->inspect(p);
  }

  StreamInfo info_;
  std::unique_ptr<StreamInspector> inspector_;
  std::uint64_t offsets_[2] = {0, 0};
};

inline bool has_rule(const Verdict& v, std::string_view id) {
  for (const Finding& f : v.findings) {
    if (f.rule_id == id) return true;
  }
  return false;
}

inline bool has_rule_prefix(const Verdict& v, std::string_view prefix) {
  for (const Finding& f : v.findings) {
    if (f.rule_id.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

inline std::string describe(const Verdict& v) {
  std::string out = "action=" + std::to_string(static_cast<int>(v.action));
  for (const Finding& f : v.findings) out += " [" + f.rule_id + " " + f.message + "]";
  return out;
}

inline std::string get(std::string_view target) {
  return "GET " + std::string(target) +
         " HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
         "Accept: text/html,application/xhtml+xml\r\nAccept-Language: en\r\n\r\n";
}

inline std::string post_form(std::string_view target, std::string_view body) {
  return "POST " + std::string(target) +
         " HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
         "Accept: text/html\r\nContent-Type: application/x-www-form-urlencoded\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

inline std::string html_response(std::string_view body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

}  // namespace tosec::svm::waf::testing
