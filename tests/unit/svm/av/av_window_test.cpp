// Window mode (the default): body signatures in one payload, split across payloads, inside HTTP,
// and the isolation between streams and directions.
#include <thread>

#include "av_test_support.h"

namespace tosec::svm {
namespace {

using av_test::eicar;
using av_test::Harness;
using av_test::html;
using av_test::Stream;

constexpr const char* kEicarName = "Tosec.Test.EICAR.UNOFFICIAL";

void expect_eicar_block(const Verdict& v) {
  ASSERT_EQ(v.action, Action::kBlock);
  ASSERT_EQ(v.findings.size(), 1u);
  EXPECT_EQ(v.findings[0].action, Action::kBlock);
  EXPECT_EQ(v.findings[0].rule_id, kEicarName);
  EXPECT_EQ(v.findings[0].message, std::string("virus found: ") + kEicarName);
  EXPECT_EQ(v.findings[0].category, "malware");
}

TEST(AvWindow, EicarInOnePayloadBlocks) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  expect_eicar_block(s.out(eicar()));
}

TEST(AvWindow, EicarSplitAcrossTwoPayloadsAtEveryPoint) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  const std::string e = eicar();
  for (std::size_t cut = 1; cut < e.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    Stream s(*h.thread, cut);
    EXPECT_EQ(s.out(html(3000, cut) + e.substr(0, cut)).action, Action::kPass);
    expect_eicar_block(s.out(e.substr(cut) + html(500, cut + 1)));
  }
}

TEST(AvWindow, EicarInOneBytePayloads) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  const std::string e = eicar();
  for (std::size_t i = 0; i + 1 < e.size(); ++i) {
    ASSERT_EQ(s.in(e.substr(i, 1)).action, Action::kPass) << "byte " << i;
  }
  expect_eicar_block(s.in(e.substr(e.size() - 1)));
}

TEST(AvWindow, EicarEmbeddedInHttpResponseAfterLongBody) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 7);
  const std::string body = html(20000, 7) + eicar() + html(2000, 8);
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body;
  EXPECT_EQ(s.out("GET /download HTTP/1.1\r\nHost: example.test\r\n\r\n").action, Action::kPass);
  // 1460-byte segments: the signature straddles a segment boundary somewhere past the overlap.
  const Verdict v = s.send_pieces(Direction::kInbound, response, 1460);
  expect_eicar_block(v);
}

TEST(AvWindow, CmdExecSignatureWithGap) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  EXPECT_EQ(s.out("run cmd.exe").action, Action::kPass);
  const Verdict v = s.out("    /c del *.*\r\n");
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, "Tosec.Test.CmdExec.UNOFFICIAL");
}

TEST(AvWindow, LogicalSignatureNeedsBothParts) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  Stream a(*h.thread, 1);
  EXPECT_EQ(a.out("<?php eval($x); ?>").action, Action::kPass);
  Stream b(*h.thread, 2);
  const Verdict v = b.out("<?php eval(base64_decode('aGVsbG8=')); ?>");
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, "Tosec.Test.PhpEvalBase64.UNOFFICIAL");
}

TEST(AvWindow, BenignTrafficPassesWithoutFindings) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  for (std::uint64_t i = 0; i < 50; ++i) {
    const Verdict v = (i % 2 == 0) ? s.out(html(1460, i)) : s.in(html(1460, i));
    EXPECT_EQ(v.action, Action::kPass);
    EXPECT_TRUE(v.findings.empty());
  }
  EXPECT_EQ(s.finish().action, Action::kPass);
}

TEST(AvWindow, HalvesOnTwoStreamsAreClean) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  const std::string e = eicar();
  Stream a(*h.thread, 1);
  Stream b(*h.thread, 2);
  EXPECT_EQ(a.out(e.substr(0, 34)).action, Action::kPass);
  EXPECT_EQ(b.out(e.substr(34)).action, Action::kPass);
  EXPECT_EQ(a.finish().action, Action::kPass);
  EXPECT_EQ(b.finish().action, Action::kPass);
}

TEST(AvWindow, HalvesOnTwoDirectionsAreClean) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  const std::string e = eicar();
  Stream s(*h.thread, 1);
  EXPECT_EQ(s.out(e.substr(0, 34)).action, Action::kPass);
  EXPECT_EQ(s.in(e.substr(34)).action, Action::kPass);
}

TEST(AvWindow, DetectModeAlertsOnceAndKeepsScanning) {
  auto h = Harness::make({{"mode", "detect"}});
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  const Verdict first = s.out(eicar());
  ASSERT_EQ(first.action, Action::kAlert);
  EXPECT_EQ(first.findings.at(0).rule_id, kEicarName);
  // The detected bytes are not reported again by the next window's overlap.
  EXPECT_EQ(s.out(html(100, 1)).action, Action::kPass);
  // A second, new occurrence is.
  EXPECT_EQ(s.out(eicar()).action, Action::kAlert);
}

TEST(AvWindow, SignatureLongerThanOverlapIsMissedWhenSplit) {
  // Documents the window contract: overlap must be >= the longest body signature.
  auto h = Harness::make({{"overlap_bytes", "16"}});
  ASSERT_TRUE(h.ok());
  const std::string e = eicar();
  Stream s(*h.thread, 1);
  EXPECT_EQ(s.out(e.substr(0, 30)).action, Action::kPass);
  EXPECT_EQ(s.out(e.substr(30)).action, Action::kPass);
  Stream whole(*h.thread, 2);
  EXPECT_EQ(whole.out(e).action, Action::kBlock);
}

TEST(AvWindow, PayloadLargerThanOneChunkIsScannedAcrossChunks) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  // 1 MiB windows: put the signature across the first chunk boundary.
  std::string big = html((1u << 20) - 30, 3) + eicar() + html(1000, 4);
  Stream s(*h.thread, 1);
  expect_eicar_block(s.in(big));
}

TEST(AvWindow, ThreadsShareOneEngine) {
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  int detected[2] = {0, 0};
  auto worker = [&](int k) {
    auto t = h.engine->make_thread();
    ASSERT_TRUE(t.ok());
    for (int i = 0; i < 20; ++i) {
      Stream s(**t, static_cast<std::uint64_t>(k * 100 + i));
      const std::string e = eicar();
      const auto cut = static_cast<std::size_t>(5 + i);
      if (s.out(html(2000, static_cast<std::uint64_t>(i)) + e.substr(0, cut)).action !=
          Action::kPass)
        continue;
      if (s.out(e.substr(cut)).blocked()) ++detected[k];
    }
  };
  std::thread t0(worker, 0);
  std::thread t1(worker, 1);
  t0.join();
  t1.join();
  EXPECT_EQ(detected[0], 20);
  EXPECT_EQ(detected[1], 20);
}

}  // namespace
}  // namespace tosec::svm
