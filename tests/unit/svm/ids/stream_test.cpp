// Stream semantics: patterns split across payloads, per-stream isolation, end-of-stream matches,
// the retained window's limit, many streams, and threads.
#include <gtest/gtest.h>

#include <thread>

#include "ids_test_support.h"

namespace tosec::svm::ids_test {
namespace {

const char* kSplitRule =
    "drop http any any -> any any (msg:\"evil cgi\"; flow:to_server,established; "
    "content:\"/cgi-bin/evil-payload.sh\"; classtype:web-application-attack; sid:1000001;)\n";

TEST(IdsStream, AttackSplitAcrossTwoPayloadsBlocksOnTheSecond) {
  TempDir dir;
  auto engine = engine_from(dir, kSplitRule);
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  StreamDriver s(*thread, client_stream());
  const Verdict first = s.to_server("GET /cgi-bin/evil-");
  EXPECT_EQ(first.action, Action::kPass);
  EXPECT_TRUE(first.findings.empty());
  const Verdict second = s.to_server("payload.sh HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(second.action, Action::kBlock);
  ASSERT_EQ(second.findings.size(), 1u);
  EXPECT_EQ(second.findings[0].rule_id, "sid:1000001");
  EXPECT_EQ(second.findings[0].message, "evil cgi");
  EXPECT_EQ(second.findings[0].category, "web-application-attack");
}

TEST(IdsStream, OneByteAtATime) {
  TempDir dir;
  auto engine = engine_from(dir, kSplitRule);
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  StreamDriver s(*thread, client_stream());
  const std::string req = "GET /cgi-bin/evil-payload.sh HTTP/1.1\r\n";
  const std::size_t last = req.find(".sh") + 2;
  for (std::size_t i = 0; i < req.size(); ++i) {
    const Verdict v = s.to_server(req.substr(i, 1));
    EXPECT_EQ(v.blocked(), i == last) << "byte " << i;
  }
}

TEST(IdsStream, StreamsKeepTheirStateApart) {
  TempDir dir;
  auto engine = engine_from(dir, kSplitRule);
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  StreamDriver a(*thread, client_stream(1));
  StreamDriver b(*thread, client_stream(2));
  EXPECT_FALSE(a.to_server("GET /cgi-bin/evil-").blocked());
  EXPECT_FALSE(b.to_server("payload.sh HTTP/1.1\r\n").blocked());  // other half, other stream
  EXPECT_FALSE(b.to_server("GET /cgi-bin/evil-").blocked());
  EXPECT_TRUE(a.to_server("payload.sh").blocked());
  EXPECT_TRUE(b.to_server("payload.sh").blocked());
}

TEST(IdsStream, DirectionsKeepTheirStateApart) {
  TempDir dir;
  auto engine = engine_from(dir, "alert tcp any any -> any any (content:\"split-me\"; sid:1;)\n");
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  StreamDriver s(*thread, client_stream());
  EXPECT_TRUE(s.to_server("spl").findings.empty());
  EXPECT_TRUE(s.to_client("it-me").findings.empty());
  EXPECT_TRUE(has_finding(s.to_server("it-me"), "sid:1"));
}

TEST(IdsStream, EndAnchoredMatchIsReportedByFinish) {
  TempDir dir;
  auto engine = engine_from(dir,
                            "alert tcp any any -> any any (msg:\"tail\"; pcre:\"/TAIL-MARK$/\"; "
                            "sid:7;)\n");
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  StreamDriver s(*thread, client_stream());
  EXPECT_TRUE(s.to_server("data TAIL-").findings.empty());
  EXPECT_TRUE(s.to_server("MARK").findings.empty());  // more bytes may still come
  const Verdict end = s.finish();
  EXPECT_TRUE(has_finding(end, "sid:7"));
  // Not at the end: nothing.
  StreamDriver t(*thread, client_stream(2));
  EXPECT_TRUE(t.to_server("TAIL-MARK and more").findings.empty());
  EXPECT_TRUE(t.finish().findings.empty());
}

TEST(IdsStream, MatchesNeedTheirBytesInTheWindow) {
  TempDir dir;
  const std::string rules =
      "alert tcp any any -> any any (content:\"FIRST-MARK\"; content:\"SECOND-MARK\"; "
      "distance:0; sid:1;)\n";
  auto engine = engine_from(dir, rules, {{"window_bytes", "1024"}});
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  const std::string filler(600, '.');
  StreamDriver near(*thread, client_stream(1));
  EXPECT_TRUE(near.to_server("FIRST-MARK").findings.empty());
  EXPECT_TRUE(near.to_server(filler).findings.empty());
  EXPECT_TRUE(has_finding(near.to_server("SECOND-MARK"), "sid:1"));
  StreamDriver far(*thread, client_stream(2));
  EXPECT_TRUE(far.to_server("FIRST-MARK").findings.empty());
  EXPECT_TRUE(far.to_server(filler).findings.empty());
  EXPECT_TRUE(far.to_server(filler).findings.empty());  // FIRST-MARK leaves the 1 KiB window
  EXPECT_TRUE(far.to_server("SECOND-MARK").findings.empty());
}

TEST(IdsStream, ManyInterleavedStreams) {
  TempDir dir;
  auto engine = engine_from(dir, kSplitRule);
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  constexpr int kStreams = 2000;
  std::vector<std::unique_ptr<StreamDriver>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<StreamDriver>(
        *thread, client_stream(static_cast<std::uint64_t>(i + 1),
                               static_cast<std::uint16_t>(8000 + i % 100))));
  }
  // Every 7th stream carries the attack, split; the others carry each half on its own.
  for (int i = 0; i < kStreams; ++i) {
    const bool attack = i % 7 == 0;
    EXPECT_FALSE(streams[static_cast<std::size_t>(i)]
                     ->to_server(attack || i % 2 ? "GET /cgi-bin/evil-" : "POST /x")
                     .blocked());
  }
  int blocked = 0;
  for (int i = 0; i < kStreams; ++i) {
    const bool attack = i % 7 == 0;
    const Verdict v = streams[static_cast<std::size_t>(i)]->to_server(
        attack ? "payload.sh HTTP/1.1" : (i % 2 ? " payload.sh" : "payload.sh"));
    EXPECT_EQ(v.blocked(), attack) << "stream " << i;
    blocked += v.blocked() ? 1 : 0;
  }
  EXPECT_EQ(blocked, (kStreams + 6) / 7);
  for (auto& s : streams) EXPECT_TRUE(s->finish().findings.empty());
}

TEST(IdsStream, ThreadsShareOneEngine) {
  TempDir dir;
  auto engine = engine_from(dir, std::string(kSplitRule) +
                                     "alert tcp any any -> any any (content:\"key=\"; "
                                     "pcre:\"/^\\d{3}!/R\"; sid:2;)\n");
  ASSERT_TRUE(engine);
  std::atomic<int> blocks{0};
  std::atomic<int> alerts{0};
  auto worker = [&](int id) {
    auto thread = thread_of(*engine);
    if (!thread) return;
    for (int i = 0; i < 300; ++i) {
      StreamDriver s(*thread, client_stream(static_cast<std::uint64_t>(id * 1000 + i)));
      s.to_server("GET /cgi-bin/evil-");
      if (s.to_server(i % 3 == 0 ? "payload.sh" : "other.sh").blocked()) ++blocks;
      StreamDriver p(*thread, client_stream(static_cast<std::uint64_t>(id * 1000 + i + 500)));
      if (has_finding(p.to_server(i % 2 == 0 ? "a=1&key=123!" : "a=1&key=12!"), "sid:2")) ++alerts;
      p.finish();
    }
  };
  std::thread t1(worker, 1);
  std::thread t2(worker, 2);
  t1.join();
  t2.join();
  EXPECT_EQ(blocks.load(), 2 * 100);
  EXPECT_EQ(alerts.load(), 2 * 150);
}

TEST(IdsStream, InspectorOutlivesItsEngineAndThread) {
  TempDir dir;
  auto engine = engine_from(dir, kSplitRule);
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  auto inspector = thread->open_stream(client_stream());
  thread.reset();
  engine.reset();
  const std::string req = "GET /cgi-bin/evil-payload.sh";
  Payload p;
  p.bytes = std::as_bytes(std::span(req.data(), req.size()));
  EXPECT_TRUE(inspector->inspect(p).blocked());
}

TEST(IdsStream, SummaryNamesRulesAndDatabases) {
  TempDir dir;
  auto engine = engine_from(dir, kSplitRule);
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->kind(), "ids");
  const std::string s = engine->summary();
  EXPECT_NE(s.find("1 rules (0 alert, 1 drop/reject, 0 pass)"), std::string::npos) << s;
  EXPECT_NE(s.find("to_client db none"), std::string::npos) << s;
}

}  // namespace
}  // namespace tosec::svm::ids_test
