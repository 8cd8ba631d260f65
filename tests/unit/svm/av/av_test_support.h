// Helpers for the av engine tests: the EICAR test string (assembled at run time so no file
// carries it in plain text), an engine + thread harness, and a stream driver that keeps the
// per-direction offsets the runtime would.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "tosec/svm/engines/av.h"

namespace tosec::svm::av_test {

inline std::string eicar() {
  // Three pieces: the full string appears only in memory.
  std::string s = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$";
  s += "EICAR-STANDARD-";
  s += "ANTIVIRUS-TEST-FILE!$H+H*";
  return s;
}

inline std::string shipped_rules() { return std::string(TOSEC_SOURCE_DIR) + "/examples/rules/av"; }
inline constexpr const char* kTestfiles = "/usr/share/clamav-testfiles";

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return {};
  std::string s(static_cast<std::size_t>(in.tellg()), '\0');
  in.seekg(0);
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  return s;
}

// Benign, HTML-like text of `n` bytes; `seed` makes every buffer unique.
inline std::string html(std::size_t n, std::uint64_t seed = 0) {
  std::string s;
  s.reserve(n + 64);
  std::uint64_t i = seed * 1000003;
  while (s.size() < n) {
    s += "<div class=\"row\"><a href=\"/item/" + std::to_string(i++) + "\">item</a></div>\n";
  }
  s.resize(n);
  return s;
}

// Benign plain text (not HTML: libclamav's HTML handling changes what raw signatures see, see
// docs/engines/av.md) of `n` bytes.
inline std::string text(std::size_t n, std::uint64_t seed = 0) {
  std::string s;
  s.reserve(n + 64);
  std::uint64_t i = seed * 1000003;
  while (s.size() < n) s += "line " + std::to_string(i++) + ": nothing to see here\n";
  s.resize(n);
  return s;
}

struct Harness {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<EngineThread> thread;

  static Harness make(std::map<std::string, std::string> options = {},
                      std::string rules = shipped_rules()) {
    Harness h;
    auto e = make_av_engine(EngineConfig{"av-test", std::move(rules), std::move(options)});
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
    if (!e.ok()) return h;
    h.engine = std::move(*e);
    auto t = h.engine->make_thread();
    EXPECT_TRUE(t.ok());
    if (t.ok()) h.thread = std::move(*t);
    return h;
  }
  bool ok() const { return thread != nullptr; }
};

// One stream, fed the way the runtime feeds it.
class Stream {
 public:
  Stream(EngineThread& thread, std::uint64_t id) {
    StreamInfo info;
    info.stream_id = id;
    info.guest = "g1";
    inspector_ = thread.open_stream(info);
  }
  Verdict send(Direction d, std::string_view bytes) {
    Payload p;
    p.direction = d;
    p.flow = d == Direction::kOutbound ? Flow::kToServer : Flow::kToClient;
    p.stream_offset = offset_[static_cast<int>(d)];
    p.bytes = std::as_bytes(std::span<const char>(bytes.data(), bytes.size()));
    offset_[static_cast<int>(d)] += bytes.size();
    return inspector_->inspect(p);
  }
  Verdict out(std::string_view bytes) { return send(Direction::kOutbound, bytes); }
  Verdict in(std::string_view bytes) { return send(Direction::kInbound, bytes); }
  // Feeds `bytes` in pieces of `piece` bytes; returns the first non-pass verdict, or pass.
  Verdict send_pieces(Direction d, std::string_view bytes, std::size_t piece) {
    for (std::size_t at = 0; at < bytes.size(); at += piece) {
      Verdict v = send(d, bytes.substr(at, piece));
      if (v.action != Action::kPass) return v;
    }
    return {};
  }
  Verdict finish() { return inspector_->finish(); }

 private:
  std::unique_ptr<StreamInspector> inspector_;
  std::uint64_t offset_[2] = {0, 0};
};

}  // namespace tosec::svm::av_test
