// scan=http: HTTP bodies (de-chunked, inflated) scanned whole on the payload that completes them.
#include <zlib.h>

#include "av_test_support.h"

namespace tosec::svm {
namespace {

#if TOSEC_AV_WITH_HTTP

using av_test::eicar;
using av_test::Harness;
using av_test::kTestfiles;
using av_test::read_file;
using av_test::Stream;
using av_test::text;

constexpr const char* kEicarName = "Tosec.Test.EICAR.UNOFFICIAL";
constexpr const char* kClamExe = "Tosec.Test.ClamExe.UNOFFICIAL";
constexpr const char* kGet = "GET /file HTTP/1.1\r\nHost: example.test\r\n\r\n";

std::string response_head(std::size_t length, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + extra +
         "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

std::string gzip(const std::string& in) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Returns the index of the first non-pass verdict among `pieces`, or -1.
int first_hit(Stream& s, Direction d, const std::vector<std::string>& pieces, Verdict* hit) {
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    Verdict v = s.send(d, pieces[i]);
    if (v.action != Action::kPass) {
      *hit = std::move(v);
      return static_cast<int>(i);
    }
  }
  return -1;
}

TEST(AvHttp, ResponseBodyBlockedOnTheCompletingPayload) {
  auto h = Harness::make({{"scan", "http"}});
  ASSERT_TRUE(h.ok());
  EXPECT_NE(h.engine->summary().find("scan=http"), std::string::npos);
  const std::string body = text(5000, 1) + eicar() + text(3000, 2);
  const std::string resp = response_head(body.size()) + body;
  Stream s(*h.thread, 1);
  EXPECT_EQ(s.out(kGet).action, Action::kPass);
  std::vector<std::string> pieces;
  for (std::size_t at = 0; at < resp.size(); at += 1460) pieces.push_back(resp.substr(at, 1460));
  Verdict v;
  EXPECT_EQ(first_hit(s, Direction::kInbound, pieces, &v), static_cast<int>(pieces.size()) - 1);
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, kEicarName);
}

TEST(AvHttp, ChunkFramingInsideTheSignatureIsRemoved) {
  const std::string e = eicar();
  const std::string chunked =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "14\r\n" +
      e.substr(0, 20) +
      "\r\n"
      "1e\r\n" +
      e.substr(20, 30) + "\r\n" + "12\r\n" + e.substr(50) + "\r\n0\r\n\r\n";
  // Window mode sees the chunk-size lines inside the signature: no match.
  auto window = Harness::make();
  ASSERT_TRUE(window.ok());
  Stream w(*window.thread, 1);
  EXPECT_EQ(w.out(kGet).action, Action::kPass);
  EXPECT_EQ(w.in(chunked).action, Action::kPass);
  // HTTP mode scans the de-chunked body.
  auto h = Harness::make({{"scan", "http"}});
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 2);
  EXPECT_EQ(s.out(kGet).action, Action::kPass);
  const Verdict v = s.in(chunked);
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, kEicarName);
}

TEST(AvHttp, GzipResponseIsScannedInflated) {
  const std::string gz = gzip(text(2000, 3) + eicar() + text(2000, 4));
  const std::string resp = response_head(gz.size(), "Content-Encoding: gzip\r\n") + gz;
  auto window = Harness::make();
  ASSERT_TRUE(window.ok());
  Stream w(*window.thread, 1);
  EXPECT_EQ(w.out(kGet).action, Action::kPass);
  EXPECT_EQ(w.in(resp).action, Action::kPass) << "compressed bytes hide the signature";
  auto h = Harness::make({{"scan", "http"}});
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 2);
  EXPECT_EQ(s.out(kGet).action, Action::kPass);
  const Verdict v = s.in(resp);
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, kEicarName);
}

TEST(AvHttp, ZipDownloadAndUploadBlockedBeforeTheStreamEnds) {
  auto h = Harness::make({{"scan", "http"}});
  ASSERT_TRUE(h.ok());
  const std::string zip = read_file(std::string(kTestfiles) + "/clam.zip");
  ASSERT_FALSE(zip.empty());
  {
    Stream s(*h.thread, 1);
    EXPECT_EQ(s.out(kGet).action, Action::kPass);
    const Verdict v = s.in(response_head(zip.size()) + zip);
    ASSERT_EQ(v.action, Action::kBlock);
    EXPECT_EQ(v.findings.at(0).rule_id, kClamExe);
  }
  {
    Stream s(*h.thread, 2);
    const std::string post =
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(zip.size()) +
        "\r\n\r\n";
    EXPECT_EQ(s.out(post).action, Action::kPass);
    const Verdict v = s.send_pieces(Direction::kOutbound, zip, 100);
    ASSERT_EQ(v.action, Action::kBlock);
    EXPECT_EQ(v.findings.at(0).rule_id, kClamExe);
  }
}

TEST(AvHttp, BenignExchangesPass) {
  auto h = Harness::make({{"scan", "http"}});
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  for (std::uint64_t i = 0; i < 5; ++i) {
    const std::string body = text(3000, i);
    EXPECT_EQ(s.out(kGet).action, Action::kPass);
    const Verdict v = s.send_pieces(Direction::kInbound, response_head(body.size()) + body, 1460);
    EXPECT_EQ(v.action, Action::kPass);
    EXPECT_TRUE(v.findings.empty());
  }
  EXPECT_EQ(s.finish().action, Action::kPass);
}

TEST(AvHttp, BodyDelimitedByCloseIsScannedAtFinish) {
  auto h = Harness::make({{"scan", "http"}});
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  EXPECT_EQ(s.out(kGet).action, Action::kPass);
  EXPECT_EQ(s.in("HTTP/1.0 200 OK\r\n\r\n" + text(100, 1) + eicar()).action, Action::kPass);
  const Verdict v = s.finish();
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, kEicarName);
}

TEST(AvHttp, NonHttpStreamFallsBackToWindowScanning) {
  auto h = Harness::make({{"scan", "http"}});
  ASSERT_TRUE(h.ok());
  const std::string e = eicar();
  for (const char* hello :
       {"SSH-2.0-OpenSSH_9.2\r\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"}) {
    SCOPED_TRACE(hello);
    Stream s(*h.thread, 1);
    EXPECT_EQ(s.out(std::string(hello) + text(200, 1) + e.substr(0, 30)).action, Action::kPass);
    const Verdict v = s.out(e.substr(30));
    ASSERT_EQ(v.action, Action::kBlock);
    EXPECT_EQ(v.findings.at(0).rule_id, kEicarName);
  }
}

#else

TEST(AvHttp, NotBuilt) { GTEST_SKIP() << "built without tosec_svm_http: scan=http unavailable"; }

#endif

}  // namespace
}  // namespace tosec::svm
