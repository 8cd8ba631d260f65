// Object mode: whole objects reach libclamav, so containers are unpacked and hashed.
#include "av_test_support.h"

namespace tosec::svm {
namespace {

using av_test::eicar;
using av_test::Harness;
using av_test::html;
using av_test::kTestfiles;
using av_test::read_file;
using av_test::Stream;
using av_test::text;

constexpr const char* kClamExe = "Tosec.Test.ClamExe.UNOFFICIAL";

TEST(AvObject, ClamExeInsideZipDetectedAtFinish) {
  auto h = Harness::make({{"scan", "object"}});
  ASSERT_TRUE(h.ok());
  const std::string zip = read_file(std::string(kTestfiles) + "/clam.zip");
  ASSERT_GT(zip.size(), 100u);
  Stream s(*h.thread, 1);
  EXPECT_EQ(s.send_pieces(Direction::kInbound, zip, 1460).action, Action::kPass);
  const Verdict v = s.finish();
  ASSERT_EQ(v.action, Action::kBlock);
  ASSERT_EQ(v.findings.size(), 1u);
  EXPECT_EQ(v.findings[0].rule_id, kClamExe);
  EXPECT_EQ(v.findings[0].message, std::string("virus found: ") + kClamExe);
  EXPECT_EQ(v.findings[0].category, "malware");
}

TEST(AvObject, ClamExeInsideOtherContainers) {
  auto h = Harness::make({{"scan", "object"}});
  ASSERT_TRUE(h.ok());
  std::uint64_t id = 1;
  for (const char* name : {"clam.tar.gz", "clam.7z", "clam.exe.bz2", "clam.pdf"}) {
    SCOPED_TRACE(name);
    const std::string file = read_file(std::string(kTestfiles) + "/" + name);
    ASSERT_FALSE(file.empty());
    Stream s(*h.thread, id++);
    EXPECT_EQ(s.send_pieces(Direction::kInbound, file, 1460).action, Action::kPass);
    const Verdict v = s.finish();
    ASSERT_EQ(v.action, Action::kBlock);
    EXPECT_EQ(v.findings.at(0).rule_id, kClamExe);
  }
}

TEST(AvObject, WindowModeCannotSeeInsideTheZip) {
  // Why object mode exists: a hash signature needs the whole unpacked member.
  auto h = Harness::make();
  ASSERT_TRUE(h.ok());
  const std::string zip = read_file(std::string(kTestfiles) + "/clam.zip");
  Stream s(*h.thread, 1);
  EXPECT_EQ(s.send_pieces(Direction::kInbound, zip, 1460).action, Action::kPass);
  EXPECT_EQ(s.finish().action, Action::kPass);
}

TEST(AvObject, UploadScannedWhenThePeerAnswers) {
  auto h = Harness::make({{"scan", "object"}});
  ASSERT_TRUE(h.ok());
  const std::string zip = read_file(std::string(kTestfiles) + "/clam.zip");
  Stream s(*h.thread, 1);
  EXPECT_EQ(
      s.out("POST /upload HTTP/1.1\r\nContent-Length: " + std::to_string(zip.size()) + "\r\n\r\n")
          .action,
      Action::kPass);
  EXPECT_EQ(s.send_pieces(Direction::kOutbound, zip, 1460).action, Action::kPass);
  // The HTTP prefix makes the object not a zip at offset 0; libclamav still finds the embedded
  // archive and the exe in it.
  const Verdict v = s.in("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, kClamExe);
}

TEST(AvObject, BenignObjectsPass) {
  auto h = Harness::make({{"scan", "object"}});
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  for (std::uint64_t i = 0; i < 6; ++i) {
    EXPECT_EQ(s.out(html(800, i)).action, Action::kPass);
    const Verdict v = s.send_pieces(Direction::kInbound, html(20000, i + 100), 1460);
    EXPECT_EQ(v.action, Action::kPass);
    EXPECT_TRUE(v.findings.empty());
  }
  EXPECT_EQ(s.finish().action, Action::kPass);
}

TEST(AvObject, EicarSplitInObjectModeFoundWhenObjectCompletes) {
  auto h = Harness::make({{"scan", "object"}});
  ASSERT_TRUE(h.ok());
  const std::string e = eicar();
  Stream s(*h.thread, 1);
  EXPECT_EQ(s.in(text(3000, 1) + e.substr(0, 20)).action, Action::kPass);
  EXPECT_EQ(s.in(e.substr(20)).action, Action::kPass);
  const Verdict v = s.out("next request");
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, "Tosec.Test.EICAR.UNOFFICIAL");
}

TEST(AvObject, OverLimitAlertsThenKeepsScanningByWindow) {
  auto h = Harness::make({{"scan", "object"}, {"max_object_bytes", "4096"}});
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  EXPECT_EQ(s.in(text(3000, 1)).action, Action::kPass);
  const Verdict over = s.in(text(3000, 2));
  ASSERT_EQ(over.action, Action::kAlert);
  ASSERT_EQ(over.findings.size(), 1u);
  EXPECT_EQ(over.findings[0].rule_id, "av:over-limit");
  EXPECT_EQ(over.findings[0].category, "av");
  // The rest of the object is still checked for body signatures, split or not.
  const std::string e = eicar();
  EXPECT_EQ(s.in(text(500, 3) + e.substr(0, 40)).action, Action::kPass);
  const Verdict v = s.in(e.substr(40));
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, "Tosec.Test.EICAR.UNOFFICIAL");
}

TEST(AvObject, HtmlNormalisationHidesRawSignatureInHtmlObject) {
  // Documents a libclamav behaviour (docs/engines/av.md): with all parsers on, the raw
  // EICAR signature is not matched inside an HTML object; window mode (raw) finds it.
  const std::string page = "<html><body>" + eicar() + "</body></html>";
  auto object = Harness::make({{"scan", "object"}});
  ASSERT_TRUE(object.ok());
  Stream a(*object.thread, 1);
  EXPECT_EQ(a.in(page).action, Action::kPass);
  EXPECT_EQ(a.finish().action, Action::kPass);
  auto object_raw = Harness::make({{"scan", "object"}, {"parsers", "raw"}});
  ASSERT_TRUE(object_raw.ok());
  Stream b(*object_raw.thread, 2);
  EXPECT_EQ(b.in(page).action, Action::kPass);
  EXPECT_EQ(b.finish().action, Action::kBlock);
}

TEST(AvObject, OverLimitCanBlock) {
  auto h =
      Harness::make({{"scan", "object"}, {"max_object_bytes", "1000"}, {"over_limit", "block"}});
  ASSERT_TRUE(h.ok());
  Stream s(*h.thread, 1);
  const Verdict v = s.in(html(1001, 1));
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, "av:over-limit");
}

}  // namespace
}  // namespace tosec::svm
