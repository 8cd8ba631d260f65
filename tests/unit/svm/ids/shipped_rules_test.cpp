// examples/rules/ids.rules loads and does what docs/engines/ids.md says on the demo traffic.
#include <gtest/gtest.h>

#include "ids_test_support.h"

namespace tosec::svm::ids_test {
namespace {

std::unique_ptr<Engine> shipped_engine() {
  EngineConfig cfg{"ids", std::string(TOSEC_SOURCE_DIR) + "/examples/rules/ids.rules", {}};
  auto e = make_ids_engine(cfg);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  return e.ok() ? std::move(*e) : nullptr;
}

TEST(IdsShippedRules, Load) {
  auto engine = shipped_engine();
  ASSERT_TRUE(engine);
  EXPECT_NE(engine->summary().find("6 rules (2 alert, 3 drop/reject, 1 pass)"), std::string::npos)
      << engine->summary();
}

TEST(IdsShippedRules, DemoTraffic) {
  auto engine = shipped_engine();
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  {
    StreamDriver s(*thread, client_stream(1));
    EXPECT_FALSE(s.to_server("GET /cgi-bin/evil-").blocked());
    const Verdict v = s.to_server("payload.sh HTTP/1.1\r\nHost: victim\r\n\r\n");
    EXPECT_TRUE(v.blocked());
    EXPECT_TRUE(has_finding(v, "sid:1000001"));
  }
  {
    StreamDriver s(*thread, client_stream(2));
    const Verdict v = s.to_server("GET /download?file=../../../etc/passwd HTTP/1.1\r\n\r\n");
    EXPECT_TRUE(v.blocked());
    EXPECT_TRUE(has_finding(v, "sid:1000002"));
  }
  {
    StreamDriver s(*thread, client_stream(3));
    const Verdict v = s.to_server("GET /ping?host=127.0.0.1;cat%20/etc/shadow HTTP/1.1\r\n\r\n");
    EXPECT_EQ(v.action, Action::kAlert);
    EXPECT_TRUE(has_finding(v, "sid:1000003"));
  }
  {
    StreamDriver s(*thread, client_stream(4));
    EXPECT_TRUE(s.to_server("GET /users HTTP/1.1\r\n\r\n").findings.empty());
    const Verdict v = s.to_client("HTTP/1.1 200 OK\r\n\r\nroot:x:0:0:root:/root:/bin/bash\n");
    EXPECT_TRUE(v.blocked());
    EXPECT_TRUE(has_finding(v, "sid:1000004"));
  }
  {
    StreamDriver s(*thread, client_stream(5, 8080));
    const Verdict v = s.to_server("GET /item?id=1 union all select password from users");
    EXPECT_TRUE(has_finding(v, "sid:1000005"));
  }
  {  // the trusted scanner's stream passes
    StreamInfo info = client_stream(6);
    info.local = ipv4("192.0.2.10", 40000);
    StreamDriver s(*thread, info);
    EXPECT_TRUE(s.to_server("GET / HTTP/1.1\r\nX-TOSEC-Scanner: trusted\r\n\r\n").findings.empty());
    EXPECT_TRUE(s.to_server("GET /cgi-bin/evil-payload.sh HTTP/1.1\r\n\r\n").findings.empty());
  }
  {  // benign browsing raises nothing
    StreamDriver s(*thread, client_stream(7));
    EXPECT_TRUE(s.to_server("GET /index.html?user=alice&lang=en HTTP/1.1\r\nHost: shop\r\n"
                            "Accept: text/html\r\n\r\n")
                    .findings.empty());
    EXPECT_TRUE(s.to_client("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").findings.empty());
    EXPECT_TRUE(s.finish().findings.empty());
  }
}

}  // namespace
}  // namespace tosec::svm::ids_test
