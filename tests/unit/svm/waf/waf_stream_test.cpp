// Stream behaviour: verdicts do not depend on how the bytes are cut into payloads, the verdict
// comes from the payload that completed the deciding phase, chunked bodies, pipelining, per-stream
// isolation, detect mode, end of stream, parse errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "waf_test_support.h"

namespace tosec::svm::waf {
namespace {

using namespace testing;

class WafStream : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = shared_engine().make_thread();
    ASSERT_TRUE(t.ok());
    thread_ = std::move(*t);
  }
  std::unique_ptr<EngineThread> thread_;
};

std::vector<std::string_view> cut(std::string_view s, std::initializer_list<std::size_t> at) {
  std::vector<std::string_view> parts;
  std::size_t from = 0;
  for (std::size_t to : at) {
    parts.push_back(s.substr(from, to - from));
    from = to;
  }
  parts.push_back(s.substr(from));
  return parts;
}

TEST_F(WafStream, SplitRequestGivesTheSameVerdictOnTheLastPayload) {
  const std::string req = post_form("/login", "user=admin'--&pass=x' or 1=1--");
  Connection whole_conn(*thread_);
  const Verdict whole = whole_conn.to_server(req);
  ASSERT_TRUE(whole.blocked()) << describe(whole);

  const std::size_t mid_header = req.find("User-Agent") + 5;
  const std::size_t mid_body = req.find("pass=") + 3;
  const auto parts = cut(req, {3, mid_header, req.find("\r\n\r\n") + 1, mid_body});
  Connection c(*thread_, 2);
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    const Verdict v = c.to_server(parts[i]);
    EXPECT_EQ(v.action, Action::kPass) << "part " << i << ": " << describe(v);
  }
  const Verdict last = c.to_server(parts.back());
  EXPECT_TRUE(last.blocked()) << describe(last);
  std::vector<std::string> a, b;
  for (const auto& f : whole.findings) a.push_back(f.rule_id);
  for (const auto& f : last.findings) b.push_back(f.rule_id);
  EXPECT_EQ(a, b);
}

TEST_F(WafStream, QueryAttackSplitByteByByteBlocksOnTheFinalCrlf) {
  const std::string req = get("/?id=1'%20OR%20'1'='1");
  Connection c(*thread_);
  for (std::size_t i = 0; i + 1 < req.size(); ++i) {
    const Verdict v = c.to_server(std::string_view(req).substr(i, 1));
    ASSERT_EQ(v.action, Action::kPass) << "byte " << i << ": " << describe(v);
  }
  const Verdict last = c.to_server(std::string_view(req).substr(req.size() - 1));
  EXPECT_TRUE(last.blocked()) << describe(last);
  EXPECT_TRUE(has_rule(last, "942100")) << describe(last);
}

TEST_F(WafStream, ChunkedRequestBodyIsDechunkedForModSecurity) {
  // The attack is cut across two chunks: only the de-chunked body shows it.
  const std::string req =
      "POST /login HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\n"
      "Accept: text/html\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "Transfer-Encoding: chunked\r\n\r\n"
      "e\r\nuser=admin'--&\r\n"
      "10\r\npass=x' or 1=1--\r\n"
      "0\r\n\r\n";
  Connection c(*thread_);
  const auto parts = cut(req, {req.find("pass=") + 2});
  EXPECT_EQ(c.to_server(parts[0]).action, Action::kPass);
  const Verdict v = c.to_server(parts[1]);
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule_prefix(v, "942")) << describe(v);
}

TEST_F(WafStream, PipelinedSecondRequestIsTheAttack) {
  Connection c(*thread_);
  const Verdict v =
      c.to_server(get("/index.html") + get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule_prefix(v, "941")) << describe(v);
}

TEST_F(WafStream, PipelinedRequestsAreJudgedOneTransactionEach) {
  Connection c(*thread_);
  EXPECT_EQ(c.to_server(get("/a") + get("/b")).action, Action::kPass);
  // Two responses in one payload pair with the two requests; the second one leaks.
  const Verdict v = c.to_client(html_response("<p>fine</p>") +
                                html_response("You have an error in your SQL syntax; check the "
                                              "manual that corresponds to your MySQL server"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule(v, "959100")) << describe(v);
}

TEST_F(WafStream, KeepAliveConnectionPassesManyBenignRequests) {
  Connection c(*thread_);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(c.to_server(get("/page?n=" + std::to_string(i))).action, Action::kPass);
    ASSERT_EQ(c.to_client(html_response("<p>ok</p>")).action, Action::kPass);
  }
  EXPECT_TRUE(c.to_server(get("/?id=1'%20OR%20'1'='1")).blocked());
}

TEST_F(WafStream, StreamsAreIsolated) {
  const std::string body = "user=admin'--&pass=x' or 1=1--";
  const std::string req = post_form("/login", body);
  const std::size_t body_at = req.size() - body.size();
  const std::size_t half = body_at + body.size() / 2;
  Connection a(*thread_, 1);
  Connection b(*thread_, 2);
  // Each stream gets half of the attack body. Were any state shared, together they would make
  // the complete request (Content-Length is the full body) and phase 2 would block.
  EXPECT_EQ(a.to_server(std::string_view(req).substr(0, half)).action, Action::kPass);
  const Verdict vb = b.to_server(req.substr(0, body_at) + req.substr(half));
  EXPECT_EQ(vb.action, Action::kPass) << describe(vb);
  // The first stream still holds its half and blocks once its own second half arrives.
  const Verdict v = a.to_server(std::string_view(req).substr(half));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule_prefix(v, "942")) << describe(v);
}

TEST_F(WafStream, FinishJudgesARequestCutShort) {
  Connection c(*thread_);
  // Content-Length promises more than arrives; the close must not let the attack through.
  const std::string req =
      "POST /login HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n"
      "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\n"
      "user=admin'--&pass=x' or 1=1--";
  EXPECT_EQ(c.to_server(req).action, Action::kPass);
  const Verdict v = c.finish();
  EXPECT_TRUE(v.blocked()) << describe(v);
}

TEST_F(WafStream, PipelineLimitBlocks) {
  auto engine = load_engine({{"max_pipelined", "3"}});
  ASSERT_NE(engine, nullptr);
  auto t = engine->make_thread();
  ASSERT_TRUE(t.ok());
  Connection c(**t);
  const Verdict v = c.to_server(get("/1") + get("/2") + get("/3") + get("/4"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule(v, "waf:pipeline-limit")) << describe(v);
}

TEST_F(WafStream, UnparsableRequestBlocksByDefaultAndPassesWhenConfigured) {
  const std::string bad =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nZZZZ\r\nabc\r\n";
  {
    Connection c(*thread_);
    const Verdict v = c.to_server(bad);
    EXPECT_TRUE(v.blocked()) << describe(v);
    EXPECT_TRUE(has_rule(v, "waf:http-parse-error")) << describe(v);
  }
  auto engine = load_engine({{"parse_error", "pass"}});
  ASSERT_NE(engine, nullptr);
  auto t = engine->make_thread();
  ASSERT_TRUE(t.ok());
  Connection c(**t);
  EXPECT_FALSE(c.to_server(bad).blocked());
}

TEST(WafDetectMode, AttackIsReportedAsAlertAndNotBlocked) {
  auto engine = load_engine({{"mode", "detect"}});
  ASSERT_NE(engine, nullptr);
  EXPECT_NE(engine->summary().find("mode detect"), std::string::npos);
  auto t = engine->make_thread();
  ASSERT_TRUE(t.ok());
  Connection c(**t);
  const Verdict v = c.to_server(get("/?id=1'%20OR%20'1'='1"));
  EXPECT_EQ(v.action, Action::kAlert) << describe(v);
  EXPECT_TRUE(has_rule(v, "942100")) << describe(v);
  EXPECT_TRUE(has_rule(v, "949110")) << describe(v);
  for (const Finding& f : v.findings) EXPECT_NE(f.action, Action::kBlock) << f.rule_id;
  // The transaction goes on: its response phases still run and alert on their own.
  const Verdict leak = c.to_client(html_response(
      "You have an error in your SQL syntax; check the manual that corresponds to your MySQL "
      "server version"));
  EXPECT_EQ(leak.action, Action::kAlert) << describe(leak);
  EXPECT_TRUE(has_rule(leak, "959100")) << describe(leak);
  EXPECT_FALSE(has_rule(leak, "942100")) << "already reported: " << describe(leak);
  // And the stream goes on: the next request is judged too.
  EXPECT_EQ(c.to_server(get("/fine")).action, Action::kPass);
}

TEST(WafDetectMode, DetectionOnlyInTheConfAlertsToo) {
  const std::string path = std::string(::testing::TempDir()) + "waf_detect_only.conf";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f, "Include %s\nSecRuleEngine DetectionOnly\n", TOSEC_WAF_CONF);
    std::fclose(f);
  }
  auto engine = make_waf_engine(EngineConfig{"waf-x", path, {}});
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  std::remove(path.c_str());
  auto t = (*engine)->make_thread();
  ASSERT_TRUE(t.ok());
  Connection c(**t);
  const Verdict v = c.to_server(get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E"));
  EXPECT_EQ(v.action, Action::kAlert) << describe(v);
  EXPECT_TRUE(has_rule_prefix(v, "941")) << describe(v);
}

}  // namespace
}  // namespace tosec::svm::waf
