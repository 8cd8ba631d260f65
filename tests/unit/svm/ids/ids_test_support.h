// Helpers for the IDS engine tests: write rules to a temp file, build the real engine, and drive
// one stream through the real inspector API.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "tosec/svm/engines/ids.h"
#include "tosec/svm/inspector.h"

namespace tosec::svm::ids_test {

// A temp directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ids-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const auto p = path_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline Endpoint ipv4(const char* addr, std::uint16_t port) {
  Endpoint e;
  e.family = AF_INET;
  inet_pton(AF_INET, addr, e.addr);
  e.port = port;
  return e;
}

// The guest 10.0.0.2:40000 connects to the peer 192.0.2.80:<port> unless told otherwise.
inline StreamInfo client_stream(std::uint64_t id = 1, std::uint16_t port = 80) {
  StreamInfo s;
  s.stream_id = id;
  s.guest = "g1";
  s.protocol = 6;
  s.local = ipv4("10.0.0.2", 40000);
  s.remote = ipv4("192.0.2.80", port);
  s.guest_is_client = true;
  return s;
}

// Builds the engine from rule text; fails the test (returns null) on error.
inline std::unique_ptr<Engine> engine_from(const TempDir& dir, const std::string& rules,
                                           std::map<std::string, std::string> options = {}) {
  EngineConfig cfg{"ids", dir.write("ids.rules", rules), std::move(options)};
  auto e = make_ids_engine(cfg);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  return e.ok() ? std::move(*e) : nullptr;
}

inline std::string build_error(const TempDir& dir, const std::string& rules,
                               std::map<std::string, std::string> options = {}) {
  EngineConfig cfg{"ids", dir.write("ids.rules", rules), std::move(options)};
  auto e = make_ids_engine(cfg);
  return e.ok() ? std::string("<built>") : e.error().message;
}

// One stream of one thread; payload strings are copied so callers may pass temporaries.
class StreamDriver {
 public:
  StreamDriver(EngineThread& thread, const StreamInfo& info)
      : info_(info), inspector_(thread.open_stream(info)) {}

  Verdict send(Flow flow, std::string_view bytes) {
    const int f = static_cast<int>(flow);
    std::string copy(bytes);
    Payload p;
    p.flow = flow;
    p.direction = flow == Flow::kToServer
                      ? (info_.guest_is_client ? Direction::kOutbound : Direction::kInbound)
                      : (info_.guest_is_client ? Direction::kInbound : Direction::kOutbound);
    p.stream_offset = offsets_[f];
    p.bytes = std::as_bytes(std::span(copy.data(), copy.size()));
    offsets_[f] += copy.size();
    return inspector_->inspect(p);
  }
  Verdict to_server(std::string_view b) { return send(Flow::kToServer, b); }
  Verdict to_client(std::string_view b) { return send(Flow::kToClient, b); }
  Verdict finish() { return inspector_->finish(); }

 private:
  StreamInfo info_;
  std::unique_ptr<StreamInspector> inspector_;
  std::uint64_t offsets_[2] = {0, 0};
};

inline std::unique_ptr<EngineThread> thread_of(Engine& engine) {
  auto t = engine.make_thread();
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  return t.ok() ? std::move(*t) : nullptr;
}

inline bool has_finding(const Verdict& v, const std::string& rule_id) {
  for (const auto& f : v.findings) {
    if (f.rule_id == rule_id) return true;
  }
  return false;
}

}  // namespace tosec::svm::ids_test
