// The acceptance cases with the real CRS (paranoia level 1): benign traffic passes, SQLi, XSS
// and path traversal in the query or a form body are blocked with the CRS rule ids.
#include <gtest/gtest.h>

#include "waf_test_support.h"

namespace tosec::svm::waf {
namespace {

using namespace testing;

class WafVerdict : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = shared_engine().make_thread();
    ASSERT_TRUE(t.ok());
    thread_ = std::move(*t);
  }
  std::unique_ptr<EngineThread> thread_;
};

TEST_F(WafVerdict, BenignGetAndResponsePass) {
  Connection c(*thread_);
  const Verdict req = c.to_server(get("/products/list.php?id=42&sort=asc"));
  EXPECT_EQ(req.action, Action::kPass) << describe(req);
  EXPECT_TRUE(req.findings.empty());
  const Verdict res = c.to_client(html_response("<html><body>42 products</body></html>"));
  EXPECT_EQ(res.action, Action::kPass) << describe(res);
  EXPECT_EQ(c.finish().action, Action::kPass);
}

TEST_F(WafVerdict, BenignFormPostPasses) {
  Connection c(*thread_);
  const Verdict v = c.to_server(post_form("/login", "user=alice&password=hunter22"));
  EXPECT_EQ(v.action, Action::kPass) << describe(v);
}

TEST_F(WafVerdict, SqlInjectionInQueryIsBlockedWith942100) {
  Connection c(*thread_);
  const Verdict v = c.to_server(get("/?id=1'%20OR%20'1'='1"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule(v, "942100")) << describe(v);
  EXPECT_TRUE(has_rule(v, "949110")) << describe(v);
  for (const Finding& f : v.findings) {
    EXPECT_FALSE(f.message.empty()) << f.rule_id;
    // Only the anomaly-score rule decides; the attack rules contribute.
    EXPECT_EQ(f.action, f.rule_id == "949110" ? Action::kBlock : Action::kAlert) << f.rule_id;
  }
}

TEST_F(WafVerdict, XssInQueryIsBlockedWith941Rules) {
  Connection c(*thread_);
  const Verdict v = c.to_server(get("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule_prefix(v, "941")) << describe(v);
  EXPECT_TRUE(has_rule(v, "949110")) << describe(v);
}

TEST_F(WafVerdict, SqlInjectionInFormBodyIsBlocked) {
  Connection c(*thread_);
  const Verdict v = c.to_server(post_form("/login", "user=admin'--&pass=x' or 1=1--"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule_prefix(v, "942")) << describe(v);
}

TEST_F(WafVerdict, XssInFormBodyIsBlocked) {
  Connection c(*thread_);
  const Verdict v =
      c.to_server(post_form("/comment", "text=%3Cscript%3Ealert(document.cookie)%3C/script%3E"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule_prefix(v, "941")) << describe(v);
}

TEST_F(WafVerdict, PathTraversalInQueryIsBlockedWith930Rules) {
  Connection c(*thread_);
  const Verdict v = c.to_server(get("/download?file=../../../../etc/passwd"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule_prefix(v, "930")) << describe(v);
}

TEST_F(WafVerdict, PathTraversalInPathIsBlocked) {
  Connection c(*thread_);
  const Verdict v = c.to_server(get("/static/../../etc/passwd"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule_prefix(v, "930")) << describe(v);
}

TEST_F(WafVerdict, SqlErrorLeakInResponseIsBlockedInPhaseFour) {
  Connection c(*thread_);
  ASSERT_EQ(c.to_server(get("/products/list.php?id=42")).action, Action::kPass);
  const Verdict v = c.to_client(html_response(
      "<html><body><b>Warning</b>: mysql_fetch_array(): supplied argument is not a valid MySQL "
      "result resource. You have an error in your SQL syntax; check the manual that corresponds "
      "to your MySQL server version for the right syntax to use near ''' at line 1</body></html>"));
  EXPECT_TRUE(v.blocked()) << describe(v);
  EXPECT_TRUE(has_rule(v, "951230")) << describe(v);
  EXPECT_TRUE(has_rule(v, "959100")) << describe(v);
}

TEST_F(WafVerdict, RequestBodyOverTheLimitIsRejected) {
  // SecRequestBodyNoFilesLimit is 128 KiB with SecRequestBodyLimitAction Reject.
  Connection c(*thread_);
  const Verdict v = c.to_server(post_form("/upload", "data=" + std::string(200 * 1024, 'a')));
  EXPECT_TRUE(v.blocked()) << describe(v);
  ASSERT_FALSE(v.findings.empty());
  EXPECT_FALSE(v.findings.back().message.empty()) << describe(v);
}

TEST_F(WafVerdict, BinaryResponseBodyIsNotInspected) {
  Connection c(*thread_);
  ASSERT_EQ(c.to_server(get("/file.bin")).action, Action::kPass);
  const std::string body = "You have an error in your SQL syntax; mysql_fetch_array()";
  const Verdict v = c.to_client(
      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(v.action, Action::kPass) << describe(v);
}

}  // namespace
}  // namespace tosec::svm::waf
