// Loading: shipped databases, bad signature files, options, the tmpfs scratch directory, and
// scan errors reported as findings.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "av_test_support.h"

namespace tosec::svm {
namespace {

namespace fs = std::filesystem;
using av_test::eicar;
using av_test::Harness;
using av_test::shipped_rules;
using av_test::Stream;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = fs::temp_directory_path().string() + "/tosec-av-test-XXXXXX";
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

rpc::Result<std::unique_ptr<Engine>> load(const std::string& rules,
                                          std::map<std::string, std::string> options = {}) {
  return make_av_engine(EngineConfig{"av-test", rules, std::move(options)});
}

TEST(AvLoad, ShippedRulesLoad) {
  auto e = load(shipped_rules());
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ((*e)->kind(), "av");
  EXPECT_TRUE((*e)->read_only());
  // tosec.hdb (1) + tosec.ldb (1) + tosec.ndb (2).
  EXPECT_NE((*e)->summary().find("4 signatures from 3 file(s)"), std::string::npos)
      << (*e)->summary();
}

TEST(AvLoad, SingleFileLoads) {
  auto e = load(shipped_rules() + "/tosec.hdb");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_NE((*e)->summary().find("1 signatures from 1 file(s)"), std::string::npos);
}

TEST(AvLoad, BadSignatureFileIsNamed) {
  TempDir dir;
  dir.write("good.ndb", "Good.Sig:0:*:414243444546\n");
  const std::string bad = dir.write("bad.ndb", "Good.Two:0:*:414243\nBroken.Sig:0:*:zz-not-hex\n");
  auto e = load(dir.path());
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find(bad), std::string::npos) << e.error().message;
  EXPECT_NE(e.error().message.find("Malformed database"), std::string::npos) << e.error().message;
}

TEST(AvLoad, BadHashLineIsNamed) {
  TempDir dir;
  const std::string bad = dir.write("x.hdb", "not-a-hash-line\n");
  auto e = load(bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find(bad), std::string::npos) << e.error().message;
}

TEST(AvLoad, MissingPathAndEmptyDirectoryAreErrors) {
  auto missing = load("/nonexistent/tosec/av");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/tosec/av"), std::string::npos);
  TempDir dir;
  dir.write("README", "not a database\n");
  auto empty = load(dir.path());
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("no signature files"), std::string::npos);
  auto no_path = load("");
  EXPECT_FALSE(no_path.ok());
}

TEST(AvLoad, EmptySignatureFileIsAnError) {
  TempDir dir;
  const std::string f = dir.write("empty.ndb", "");
  auto e = load(f);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find(f), std::string::npos) << e.error().message;
}

TEST(AvLoad, BadOptionsNameKeyAndValue) {
  struct Case {
    const char* key;
    const char* value;
  } cases[] = {{"mode", "prevent"},     {"scan", "stream"},         {"overlap_bytes", "0"},
               {"overlap_bytes", "4k"}, {"max_object_bytes", "-1"}, {"over_limit", "maybe"},
               {"parsers", "some"},     {"cache", "yes"},           {"tmpdir", "relative"},
               {"colour", "blue"}};
  for (const auto& c : cases) {
    auto e = load(shipped_rules(), {{c.key, c.value}});
    ASSERT_FALSE(e.ok()) << c.key << "=" << c.value;
    EXPECT_NE(e.error().message.find(c.key), std::string::npos) << e.error().message;
    EXPECT_NE(e.error().message.find(c.value), std::string::npos) << e.error().message;
  }
}

TEST(AvLoad, ScratchDirectoryOnTmpfsLivesWithTheEngines) {
  const std::string dir = "/dev/shm/tosec-av-" + std::to_string(::getpid());
  ASSERT_FALSE(fs::exists(dir));
  {
    auto a = load(shipped_rules());
    ASSERT_TRUE(a.ok());
    EXPECT_TRUE(fs::is_directory(dir));
    {
      auto b = load(shipped_rules());
      ASSERT_TRUE(b.ok());
    }
    EXPECT_TRUE(fs::is_directory(dir)) << "still used by the first engine";
  }
  EXPECT_FALSE(fs::exists(dir));
}

TEST(AvLoad, ScanErrorIsAnAlertNotACrash) {
  TempDir base;
  auto h = Harness::make({{"tmpdir", base.path()}});
  ASSERT_TRUE(h.ok());
  // Take libclamav's scratch directory away: every scan now fails to create its temp dir.
  const std::string scratch = base.path() + "/tosec-av-" + std::to_string(::getpid());
  ASSERT_TRUE(fs::is_directory(scratch));
  fs::remove_all(scratch);
  std::ofstream(scratch) << "a file where the directory was\n";
  Stream s(*h.thread, 1);
  const Verdict v = s.out(eicar());
  ASSERT_EQ(v.action, Action::kAlert);
  ASSERT_EQ(v.findings.size(), 1u);
  EXPECT_EQ(v.findings[0].rule_id, "av:scan-error");
  EXPECT_EQ(v.findings[0].message.rfind("scan error: ", 0), 0u) << v.findings[0].message;
  fs::remove(scratch);
}

}  // namespace
}  // namespace tosec::svm
