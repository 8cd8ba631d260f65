// InspectionPlane + SvmRuntime through one real inspection region, in-process (threads).
#include <atomic>
#include <condition_variable>
#include <random>

#include "harness.h"

namespace tosec::svm::test {
namespace {

constexpr auto kOut = Direction::kOutbound;
constexpr auto kIn = Direction::kInbound;

const char* kRules1 = "block 1001 BAD1\nalert 1002 NOTE\nblock 1003 XX\n";
const char* kRules2 = "block 2001 BAD2\nblock 2003 XX\n";

TEST(InspectionPlane, SingleStepPassDeliversInOrder) {
  Harness h({{"s1", 1}});
  h.start_svm(1, literal(kRules1));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(7), 1).ok());
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(h.submit(7, kOut, "part" + std::to_string(i) + ";").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 20; }));
  std::string want;
  for (int i = 0; i < 20; ++i) want += "part" + std::to_string(i) + ";";
  EXPECT_EQ(h.delivered[0][7], want);
  EXPECT_TRUE(h.blocks.empty());
  EXPECT_EQ(h.svm(1).counters().payloads.load(), 20U);
  EXPECT_EQ(h.plane().stats().inflight, 0U);
}

TEST(InspectionPlane, SingleStepBlockStopsTheStream) {
  Harness h({{"s1", 1}});
  h.start_svm(1, literal(kRules1));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(7), 1).ok());
  ASSERT_TRUE(h.submit(7, kOut, "fine").ok());
  ASSERT_TRUE(h.submit(7, kOut, "has BA").ok());
  ASSERT_TRUE(h.submit(7, kOut, "D1 split").ok());  // pattern split over two payloads
  ASSERT_TRUE(h.submit(7, kOut, "after").ok());
  ASSERT_TRUE(h.pump([&] { return h.blocked(7); }));
  for (int i = 0; i < 5; ++i) h.poll();
  EXPECT_EQ(h.delivered[0][7].find("D1"), std::string::npos);
  EXPECT_EQ(h.delivered[0][7].find("after"), std::string::npos);
  const BlockInfo b = h.block_of(7);
  EXPECT_EQ(b.svm, "s1");
  EXPECT_EQ(b.rule_id, "1001");
  EXPECT_NE(b.reason.find("blocked by svm s1"), std::string::npos) << b.reason;
  auto r = h.plane().submit(7, kOut, as_bytes("more"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ECONNRESET);
  EXPECT_FALSE(h.plane().stream_ok(7));
}

TEST(InspectionPlane, TwoStepsForwardDirectly) {
  Harness h({{"s1", 1}, {"s2", 2}});
  h.start_svm(1, literal(kRules1));
  h.start_svm(2, literal(kRules2));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}, {"s2"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(2), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "clean").ok());
  ASSERT_TRUE(h.submit(2, kOut, "bad for BAD2 only").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 1 && h.blocked(2); }));
  // A member counts after it hands on: the verdict can reach the TOE first.
  ASSERT_TRUE(h.pump([&] {
    return h.svm(1).counters().forwards.load() == 2U && h.svm(2).counters().payloads.load() == 2U;
  }));
  EXPECT_EQ(h.delivered[0][1], "clean");
  EXPECT_EQ(h.block_of(2).svm, "s2");
  EXPECT_EQ(h.svm(1).counters().forwards.load(), 2U);  // s1 handed both to s2 itself
  EXPECT_EQ(h.svm(2).counters().payloads.load(), 2U);
  EXPECT_EQ(h.plane().stats().group_joins, 0U);
}

TEST(InspectionPlane, ParallelGroupJoinsAtTheToe) {
  Harness h({{"s1", 1}, {"s2", 2}});
  h.start_svm(1, literal(kRules1));
  h.start_svm(2, literal(kRules2));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1", "s2"}}, false}})).ok());
  for (std::uint64_t id = 1; id <= 3; ++id)
    ASSERT_TRUE(h.plane().open_stream(stream_info(id), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "clean").ok());
  ASSERT_TRUE(h.submit(2, kOut, "BAD1 here").ok());
  ASSERT_TRUE(h.submit(3, kOut, "BAD2 here").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 1 && h.blocked(2) && h.blocked(3); }));
  // A block from one member decides the group: the other member may still be inspecting that
  // payload. Each member still sees all three (counted when it finishes).
  ASSERT_TRUE(h.pump([&] {
    return h.svm(1).counters().payloads.load() == 3U && h.svm(2).counters().payloads.load() == 3U;
  }));
  EXPECT_EQ(h.delivered[0][1], "clean");
  EXPECT_EQ(h.block_of(2).svm, "s1");
  EXPECT_EQ(h.block_of(3).svm, "s2");
  EXPECT_EQ(h.plane().stats().group_joins, 1U);
  EXPECT_EQ(h.svm(1).counters().forwards.load(), 0U);
  EXPECT_EQ(h.svm(1).counters().payloads.load(), 3U);
  EXPECT_EQ(h.svm(2).counters().payloads.load(), 3U);
}

TEST(InspectionPlane, ParallelAndSequentialGiveTheSameVerdicts) {
  Harness h({{"s1", 1}, {"s2", 2}, {"s3", 3}});
  h.start_svm(1, literal(kRules1));
  h.start_svm(2, literal(kRules2));
  h.start_svm(3, literal("block 3001 THREE\n"));
  // chain 1: s1 -> s2 -> s3; chain 2: s1 -> {s2, s3}; chain 3: {s1, s2, s3}.
  ASSERT_TRUE(h.plane()
                  .update_chains(chains({{1, {{"s1"}, {"s2"}, {"s3"}}, false},
                                         {2, {{"s1"}, {"s2", "s3"}}, false},
                                         {3, {{"s1", "s2", "s3"}}, false}}))
                  .ok());
  const std::vector<std::string> payloads = {"ok",       "BAD1",      "xBAD2x", "THREE",
                                             "fine too", "NOTE only", "XX",     "BAD"};
  std::uint64_t id = 1;
  std::map<std::uint32_t, std::vector<bool>> verdicts;
  for (std::uint32_t chain = 1; chain <= 3; ++chain) {
    const std::uint64_t first = id;
    for (const auto& p : payloads) {
      ASSERT_TRUE(h.plane().open_stream(stream_info(id), chain).ok());
      ASSERT_TRUE(h.submit(id, kOut, p).ok());
      ++id;
    }
    ASSERT_TRUE(h.pump([&] {
      for (std::uint64_t s = first; s < id; ++s) {
        if (!h.blocked(s) && h.delivered[0][s].empty()) return false;
      }
      return true;
    }));
    for (std::uint64_t s = first; s < id; ++s) verdicts[chain].push_back(h.blocked(s));
  }
  const std::vector<bool> want = {false, true, true, true, false, false, true, false};
  EXPECT_EQ(verdicts[1], want);
  EXPECT_EQ(verdicts[2], want);
  EXPECT_EQ(verdicts[3], want);
}

TEST(InspectionPlane, StreamOrderUnderManyInterleavedStreams) {
  Harness h({{"s1", 1}, {"s2", 2}});
  h.start_svm(1, literal(kRules1), InspectMode::kPrevent, 3);
  h.start_svm(2, literal(kRules2), InspectMode::kPrevent, 2);
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}, {"s2"}}, false}})).ok());
  constexpr int kStreams = 40;
  constexpr int kPayloads = 30;
  for (std::uint64_t s = 1; s <= kStreams; ++s) {
    ASSERT_TRUE(h.plane().open_stream(stream_info(s), 1).ok());
  }
  std::mt19937 rng(42);
  std::map<std::uint64_t, std::string> want[2];
  int sent = 0;
  for (int i = 0; i < kPayloads; ++i) {
    for (int s = 1; s <= kStreams; ++s) {
      const auto dir = (rng() & 1) != 0 ? kOut : kIn;
      std::string p = "<" + std::to_string(s) + ":" + std::to_string(i) + ">";
      p.append(rng() % 3000, static_cast<char>('a' + s % 26));
      want[dir == kOut ? 0 : 1][static_cast<std::uint64_t>(s)] += p;
      ASSERT_TRUE(h.submit(static_cast<std::uint64_t>(s), dir, p).ok());
      ++sent;
      if (sent % 16 == 0) h.poll();
    }
  }
  ASSERT_TRUE(h.pump([&] { return h.deliveries == static_cast<std::size_t>(sent); }));
  EXPECT_TRUE(h.blocks.empty());
  for (int d = 0; d < 2; ++d) {
    for (auto& [s, bytes] : want[d]) EXPECT_EQ(h.delivered[d][s], bytes) << "stream " << s;
  }
  EXPECT_EQ(h.plane().stats().pool_free, Harness::small_config().chunks);
}

TEST(InspectionPlane, StreamsAreIsolated) {
  Harness h({{"s1", 1}});
  h.start_svm(1, literal(kRules1), InspectMode::kPrevent, 2);
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(2), 1).ok());
  // "BAD1" split across two *streams* must not match; a block of stream 3 leaves 1 and 2 alone.
  ASSERT_TRUE(h.plane().open_stream(stream_info(3), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "..BA").ok());
  ASSERT_TRUE(h.submit(2, kOut, "D1..").ok());
  ASSERT_TRUE(h.submit(3, kOut, "BAD1").ok());
  ASSERT_TRUE(h.submit(1, kOut, "more").ok());
  ASSERT_TRUE(h.submit(2, kOut, "more").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 4 && h.blocked(3); }));
  EXPECT_EQ(h.delivered[0][1], "..BAmore");
  EXPECT_EQ(h.delivered[0][2], "D1..more");
  EXPECT_EQ(h.blocks.size(), 1U);
  // The same split within one direction of one stream does match; across directions it does not.
  ASSERT_TRUE(h.plane().open_stream(stream_info(4), 1).ok());
  ASSERT_TRUE(h.submit(4, kOut, "..BA").ok());
  ASSERT_TRUE(h.submit(4, kIn, "D1..").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 6; }));
  ASSERT_TRUE(h.submit(4, kOut, "D1").ok());
  ASSERT_TRUE(h.pump([&] { return h.blocked(4); }));
}

// Records the order in which SVMs see payloads.
struct Trace {
  std::mutex mu;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard lk(mu);
    events.push_back(std::move(e));
  }
};

class TraceEngine final : public Engine {
 public:
  TraceEngine(std::string name, Trace& t) : name_(std::move(name)), trace_(t) {}
  std::string_view kind() const override { return "trace"; }
  std::string summary() const override { return "trace"; }
  rpc::Result<std::unique_ptr<EngineThread>> make_thread() override {
    struct Insp final : StreamInspector {
      Insp(std::string n, Trace& t) : name(std::move(n)), trace(t) {}
      Verdict inspect(const Payload& p) override {
        trace.add(name + (p.direction == Direction::kOutbound ? ">" : "<") +
                  std::string(reinterpret_cast<const char*>(p.bytes.data()), p.bytes.size()));
        return {};
      }
      std::string name;
      Trace& trace;
    };
    struct Thr final : EngineThread {
      Thr(std::string n, Trace& t) : name(std::move(n)), trace(t) {}
      std::unique_ptr<StreamInspector> open_stream(const StreamInfo&) override {
        return std::make_unique<Insp>(name, trace);
      }
      std::string name;
      Trace& trace;
    };
    return std::unique_ptr<EngineThread>(std::make_unique<Thr>(name_, trace_));
  }

 private:
  std::string name_;
  Trace& trace_;
};

TEST(InspectionPlane, IncomingTraversesTheChainInReverse) {
  Harness h({{"s1", 1}, {"s2", 2}, {"s3", 3}});
  Trace trace;
  h.start_svm(1, std::make_unique<TraceEngine>("s1", trace));
  h.start_svm(2, std::make_unique<TraceEngine>("s2", trace));
  h.start_svm(3, std::make_unique<TraceEngine>("s3", trace));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}, {"s2"}, {"s3"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "o").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 1; }));
  ASSERT_TRUE(h.submit(1, kIn, "i").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 2; }));
  const std::vector<std::string> want = {"s1>o", "s2>o", "s3>o", "s3<i", "s2<i", "s1<i"};
  EXPECT_EQ(trace.events, want);
  EXPECT_EQ(h.delivered[1][1], "i");
}

TEST(InspectionPlane, CloseStreamRunsFinishAfterTheLastPayload) {
  Harness h({{"s1", 1}});
  struct Counts {
    std::atomic<int> finishes{0};
    std::atomic<int> inspects_before_finish{-1};
    std::atomic<int> inspects{0};
  } counts;
  class FinishEngine final : public Engine {
   public:
    explicit FinishEngine(Counts& c) : c_(c) {}
    std::string_view kind() const override { return "finish"; }
    std::string summary() const override { return "finish"; }
    rpc::Result<std::unique_ptr<EngineThread>> make_thread() override {
      struct Insp final : StreamInspector {
        explicit Insp(Counts& counts) : c(counts) {}
        Verdict inspect(const Payload&) override {
          ++c.inspects;
          return {};
        }
        Verdict finish() override {
          c.inspects_before_finish = c.inspects.load();
          ++c.finishes;
          return {};
        }
        Counts& c;
      };
      struct Thr final : EngineThread {
        explicit Thr(Counts& counts) : c(counts) {}
        std::unique_ptr<StreamInspector> open_stream(const StreamInfo&) override {
          return std::make_unique<Insp>(c);
        }
        Counts& c;
      };
      return std::unique_ptr<EngineThread>(std::make_unique<Thr>(c_));
    }

   private:
    Counts& c_;
  };
  h.start_svm(1, std::make_unique<FinishEngine>(counts));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(5), 1).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(h.submit(5, kOut, "x").ok());
  ASSERT_TRUE(h.plane().close_stream(5).ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 10 && counts.finishes == 1; }));
  EXPECT_EQ(counts.inspects_before_finish.load(), 10);
  EXPECT_FALSE(h.plane().stream_ok(5));
}

}  // namespace
}  // namespace tosec::svm::test
