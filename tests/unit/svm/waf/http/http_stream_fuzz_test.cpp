// Malformed input never crashes the HTTP stream parser: random bytes, random mutations of valid
// traffic, random chunking, both directions interleaved. (Run under ASan+UBSan too.)
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "recording_events.h"
#include "tosec/svm/engines/http_stream.h"

namespace tosec::svm::http {
namespace {

using testing::bytes;
using testing::client_stream;
using testing::RecordingEvents;

void feed_in_random_chunks(HttpStreamParser& p, Flow flow, const std::string& data,
                           std::mt19937& rng) {
  std::size_t at = 0;
  while (at < data.size()) {
    const std::size_t n = std::min<std::size_t>(data.size() - at, 1 + rng() % 64);
    p.feed(flow, bytes(std::string_view(data).substr(at, n)));
    at += n;
  }
}

TEST(HttpStreamFuzz, RandomBytesBothDirections) {
  auto cfg = HttpParserConfig::create();
  ASSERT_TRUE(cfg.ok());
  std::mt19937 rng(12345);
  int streams_with_anomalies = 0;
  for (int round = 0; round < 300; ++round) {
    RecordingEvents ev;
    HttpStreamParser p(*cfg, ev, client_stream());
    for (int i = 0; i < 8; ++i) {
      std::string junk(1 + rng() % 300, '\0');
      for (char& c : junk) c = static_cast<char>(rng() & 0xff);
      feed_in_random_chunks(p, (rng() & 1) != 0 ? Flow::kToServer : Flow::kToClient, junk, rng);
    }
    if ((rng() & 1) != 0) p.close();
    if (!ev.anomalies.empty()) ++streams_with_anomalies;
  }
  // Random bytes are not HTTP: the parser must have said so at least sometimes.
  EXPECT_GT(streams_with_anomalies, 0);
}

TEST(HttpStreamFuzz, MutatedValidTraffic) {
  auto cfg = HttpParserConfig::create();
  ASSERT_TRUE(cfg.ok());
  const std::string req =
      "POST /a/b.php?x=1&y=%41 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\nCookie: a=b; c=d\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"
      "GET / HTTP/1.0\r\n\r\n";
  const std::string res =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
      "Content-Length: 10\r\n\r\n\x1f\x8b\x08\x00garbage"
      "HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n";
  std::mt19937 rng(777);
  for (int round = 0; round < 500; ++round) {
    std::string r = req;
    std::string s = res;
    for (int m = 0; m < 1 + static_cast<int>(rng() % 6); ++m) {
      std::string& t = (rng() & 1) != 0 ? r : s;
      const std::size_t at = rng() % t.size();
      switch (rng() % 3) {
        case 0:
          t[at] = static_cast<char>(rng() & 0xff);
          break;
        case 1:
          t.erase(at, 1 + rng() % 8);
          break;
        default:
          t.insert(at, std::string(1 + rng() % 8, static_cast<char>(rng() & 0xff)));
          break;
      }
      if (t.empty()) t = "x";
    }
    RecordingEvents ev;
    HttpStreamParser p(*cfg, ev, client_stream());
    feed_in_random_chunks(p, Flow::kToServer, r.substr(0, r.size() / 2), rng);
    feed_in_random_chunks(p, Flow::kToClient, s.substr(0, s.size() / 2), rng);
    feed_in_random_chunks(p, Flow::kToServer, r.substr(r.size() / 2), rng);
    feed_in_random_chunks(p, Flow::kToClient, s.substr(s.size() / 2), rng);
    p.close();
  }
  SUCCEED();
}

}  // namespace
}  // namespace tosec::svm::http
