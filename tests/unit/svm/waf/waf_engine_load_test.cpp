// Loading: the real CRS loads; bad paths, bad rules and bad options fail with messages that name
// the file, line or option.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "waf_test_support.h"

namespace tosec::svm::waf {
namespace {

using testing::load_engine;

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path =
      std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()) + ".conf");
  std::ofstream(path) << text;
  return path.string();
}

TEST(WafEngineLoad, LoadsTheProjectConfWithTheWholeCrs) {
  auto engine = load_engine();
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->kind(), "waf");
  EXPECT_TRUE(engine->read_only());
  const std::string summary = engine->summary();
  EXPECT_NE(summary.find("SecRuleEngine On"), std::string::npos) << summary;
  // Debian's CRS 3.3.4 has 900+ rules; the exact count moves with CRS updates.
  EXPECT_GT(std::stoi(summary), 800) << summary;
  auto thread = engine->make_thread();
  ASSERT_TRUE(thread.ok());
}

TEST(WafEngineLoad, MissingRulesFileIsNamed) {
  EngineConfig cfg{"waf-x", "/nonexistent/waf.conf", {}};
  auto engine = make_waf_engine(cfg);
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.error().message.find("/nonexistent/waf.conf"), std::string::npos);
}

TEST(WafEngineLoad, RuleSyntaxErrorNamesFileAndLine) {
  const std::string path = write_temp(
      "waf_bad",
      "SecRuleEngine On\n# comment\nSecRule ARGS \"@rx a\" \"id:1,phase:2,deny,nosuchaction\"\n");
  auto engine = make_waf_engine(EngineConfig{"waf-x", path, {}});
  std::filesystem::remove(path);
  ASSERT_FALSE(engine.ok());
  const std::string& msg = engine.error().message;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("Line: 3"), std::string::npos) << msg;
}

TEST(WafEngineLoad, UnknownOptionAndBadValueAreNamed) {
  auto unknown = make_waf_engine(EngineConfig{"waf-x", TOSEC_WAF_CONF, {{"speed", "fast"}}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("speed"), std::string::npos);
  auto bad = make_waf_engine(EngineConfig{"waf-x", TOSEC_WAF_CONF, {{"mode", "maybe"}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("mode = 'maybe'"), std::string::npos);
}

TEST(WafEngineLoad, InlineRuleConfWithCustomDenyBlocksInPhaseOne) {
  const std::string path =
      write_temp("waf_custom",
                 "SecRuleEngine On\n"
                 "SecRule REQUEST_HEADERS:X-Test \"@streq evil\" "
                 "\"id:10001,phase:1,deny,status:418,msg:'custom test rule'\"\n");
  auto engine = make_waf_engine(EngineConfig{"waf-x", path, {}});
  std::filesystem::remove(path);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  auto thread = (*engine)->make_thread();
  ASSERT_TRUE(thread.ok());
  testing::Connection c(**thread);
  const Verdict v = c.to_server("GET / HTTP/1.1\r\nHost: h\r\nX-Test: evil\r\n\r\n");
  EXPECT_TRUE(v.blocked());
  ASSERT_EQ(v.findings.size(), 1u) << testing::describe(v);
  EXPECT_EQ(v.findings[0].rule_id, "10001");
  EXPECT_EQ(v.findings[0].message, "custom test rule");
}

}  // namespace
}  // namespace tosec::svm::waf
