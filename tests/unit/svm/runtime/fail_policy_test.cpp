// Fail policies, malformed descriptors and the alert log.
#include <atomic>
#include <condition_variable>

#include "harness.h"

namespace tosec::svm::test {
namespace {

constexpr auto kOut = Direction::kOutbound;

// An engine whose inspect() hangs on payloads containing "HANG" until released: a stuck SVM.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void release() {
    std::lock_guard lk(mu);
    open = true;
    cv.notify_all();
  }
};

class HangEngine final : public Engine {
 public:
  explicit HangEngine(Gate& g) : g_(g) {}
  std::string_view kind() const override { return "hang"; }
  std::string summary() const override { return "hang"; }
  rpc::Result<std::unique_ptr<EngineThread>> make_thread() override {
    struct Insp final : StreamInspector {
      explicit Insp(Gate& gate) : g(gate) {}
      Verdict inspect(const Payload& p) override {
        const std::string s(reinterpret_cast<const char*>(p.bytes.data()), p.bytes.size());
        if (s.find("HANG") != std::string::npos) {
          std::unique_lock lk(g.mu);
          g.cv.wait(lk, [&] { return g.open; });
        }
        return {};
      }
      Gate& g;
    };
    struct Thr final : EngineThread {
      explicit Thr(Gate& gate) : g(gate) {}
      std::unique_ptr<StreamInspector> open_stream(const StreamInfo&) override {
        return std::make_unique<Insp>(g);
      }
      Gate& g;
    };
    return std::unique_ptr<EngineThread>(std::make_unique<Thr>(g_));
  }

 private:
  Gate& g_;
};

TEST(FailPolicy, ClosedWhenTheSvmStops) {
  Harness h({{"s1", 1}});
  h.start_svm(1, literal("block 1 BAD\n"));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "first").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 1; }));
  h.stop_svm(1);  // retires its node: the plane sees it leave
  ASSERT_TRUE(h.submit(1, kOut, "second").ok());
  ASSERT_TRUE(h.pump([&] { return h.blocked(1); }));
  EXPECT_NE(h.block_of(1).reason.find("svm s1 down"), std::string::npos) << h.block_of(1).reason;
  for (int i = 0; i < 5; ++i) h.poll();
  EXPECT_EQ(h.delivered[0][1], "first");  // nothing after the failure
  EXPECT_EQ(h.plane().submit(1, kOut, as_bytes("third")).error().code, ECONNRESET);
  auto refused = h.plane().open_stream(stream_info(2), 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), EHOSTUNREACH);
  EXPECT_FALSE(h.plane().node_up(1));
  // A new incarnation of node 1 brings the chain back.
  h.start_svm(1, literal("block 1 BAD\n"));
  ASSERT_TRUE(h.pump([&] { return h.plane().node_up(1); }));
  ASSERT_TRUE(h.plane().open_stream(stream_info(3), 1).ok());
  ASSERT_TRUE(h.submit(3, kOut, "again").ok());
  ASSERT_TRUE(h.pump([&] { return h.delivered[0][3] == "again"; }));
}

TEST(FailPolicy, ClosedOnDeadlineMiss) {
  Gate gate;
  Harness h({{"s1", 1}, {"s2", 2}}, Harness::small_config(), nullptr, 30'000'000);
  h.start_svm(1, literal("block 1 BAD\n"));
  h.start_svm(2, std::make_unique<HangEngine>(gate));
  // 1 s per step: the hung engine's busy time goes stale, its heartbeat does not. Not shorter:
  // on a loaded machine a healthy SVM thread can miss a 50 ms window (and s1, checked first,
  // would be blamed for a late heartbeat); the engine stays hung until the gate opens anyway.
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}, {"s2"}}, false}}, 1'000'000)).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(2), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "ok").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 1; }));
  ASSERT_TRUE(h.submit(1, kOut, "HANG").ok());
  ASSERT_TRUE(h.submit(2, kOut, "innocent but same chain").ok());
  ASSERT_TRUE(h.pump([&] { return h.blocked(1) && h.blocked(2); }));
  EXPECT_NE(h.block_of(1).reason.find("svm s2 down"), std::string::npos) << h.block_of(1).reason;
  EXPECT_NE(h.block_of(1).reason.find("deadline"), std::string::npos);
  EXPECT_GE(h.plane().stats().deadline_misses, 1U);
  EXPECT_TRUE(h.plane().node_up(1));
  EXPECT_FALSE(h.plane().node_up(2));
  gate.release();
  for (int i = 0; i < 20; ++i) {
    h.poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(h.delivered[0][1], "ok");
  EXPECT_EQ(h.delivered[0][2], "");
}

TEST(FailPolicy, OpenBypassesWithAnAlertLine) {
  const std::string log_path = temp_path("alerts.json");
  auto log = AlertLog::open(log_path);
  ASSERT_TRUE(log.ok());
  Harness h({{"s1", 1}, {"s2", 2}}, Harness::small_config(), log->get());
  h.start_svm(1, literal("block 1 BAD1\n"));
  h.start_svm(2, literal("block 2 BAD2\n"));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}, {"s2"}}, true}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "a").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 1; }));
  h.stop_svm(2);
  ASSERT_TRUE(h.pump([&] { return !h.plane().node_up(2); }));
  ASSERT_TRUE(h.submit(1, kOut, "BAD2 passes now").ok());
  ASSERT_TRUE(h.submit(1, kOut, "BAD1 still blocks").ok());
  ASSERT_TRUE(h.pump([&] { return h.blocked(1); }));
  EXPECT_EQ(h.delivered[0][1], "aBAD2 passes now");
  EXPECT_EQ(h.block_of(1).svm, "s1");
  // New streams of the chain open (bypassing s2) and flow.
  ASSERT_TRUE(h.plane().open_stream(stream_info(2), 1).ok());
  ASSERT_TRUE(h.submit(2, kOut, "z").ok());
  ASSERT_TRUE(h.pump([&] { return h.delivered[0][2] == "z"; }));
  const auto lines = read_lines(log_path);
  std::remove(log_path.c_str());
  ASSERT_EQ(lines.size(), 2U);  // one bypass line per affected stream
  for (const auto& l : lines) {
    auto j = parse_json(l);
    EXPECT_EQ(j.fields().at("event_type").string_value(), "alert");
    EXPECT_EQ(j.fields().at("svm").string_value(), "s2");
    const auto& a = j.fields().at("alert").struct_value().fields();
    EXPECT_EQ(a.at("action").string_value(), "allowed");
    EXPECT_EQ(a.at("signature").string_value(), "svm down: bypass");
  }
  EXPECT_EQ(h.plane().stats().bypasses, 2U);
}

TEST(Malformed, DescriptorsAreCountedAndDropped) {
  Harness h({{"s1", 1}});  // nodes 2..4 have no SVM: the test produces as node 2 and node 3
  auto& s1 = h.start_svm(1, literal("block 1 BAD\n"));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  auto ring = h.channel().ring(2, 1, rpc::RingEnd::kProducer);
  ASSERT_TRUE(ring.ok());
  auto good = [] {
    rpc::InspectDesc d{};
    d.stream_id = 1;
    d.kind = rpc::InspectKind::kPayload;
    d.from_node = 2;
    d.length = 4;
    return d;
  };
  std::vector<rpc::InspectDesc> bad(5, good());
  bad[0].chunk = 100000;                           // chunk out of range
  bad[1].offset = 4094;                            // offset + length past the chunk
  bad[2].from_node = 3;                            // lies about its producer
  bad[3].kind = static_cast<rpc::InspectKind>(9);  // unknown kind
  bad[4].kind = rpc::InspectKind::kVerdict;        // a verdict is not for an SVM
  ASSERT_EQ(ring->enqueue_burst(bad.data(), 5), 5U);
  rpc::InspectDesc unknown = good();
  unknown.stream_id = 999;  // valid, but no such stream: block verdict to the TOE
  ASSERT_EQ(ring->enqueue_burst(&unknown, 1), 1U);
  (void)h.bells().ring(0, 1);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  // The SVM counts before it records the message: wait for both (failed once under ASan).
  while ((s1.counters().bad_descriptors.load() < 5 || s1.counters().unknown_streams.load() < 1 ||
          s1.last_error().find("unknown stream 999") == std::string::npos) &&
         std::chrono::steady_clock::now() < until) {
    h.poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(s1.counters().bad_descriptors.load(), 5U);
  EXPECT_EQ(s1.counters().unknown_streams.load(), 1U);
  EXPECT_NE(s1.last_error().find("unknown stream 999"), std::string::npos) << s1.last_error();
  // Bad verdicts at the TOE: produce as node 3 into ring[3][0].
  auto vring = h.channel().ring(3, 0, rpc::RingEnd::kProducer);
  ASSERT_TRUE(vring.ok());
  rpc::InspectDesc v{};
  v.kind = rpc::InspectKind::kVerdict;
  v.from_node = 1;  // wrong producer
  ASSERT_EQ(vring->enqueue_burst(&v, 1), 1U);
  v.from_node = 3;
  v.step = 200;  // step out of range
  ASSERT_EQ(vring->enqueue_burst(&v, 1), 1U);
  v.step = 0;
  v.token = 123456;  // no such payload
  ASSERT_EQ(vring->enqueue_burst(&v, 1), 1U);
  ASSERT_TRUE(h.pump([&] { return h.plane().stats().bad_descriptors >= 2; }));
  ASSERT_TRUE(h.pump([&] { return h.plane().stats().stale_verdicts >= 2; }));  // + s1's verdict
  // Everything still works.
  ASSERT_TRUE(h.submit(1, kOut, "fine").ok());
  ASSERT_TRUE(h.pump([&] { return h.delivered[0][1] == "fine"; }));
}

TEST(AlertLog, LinesAreValidJsonWithTheEveFields) {
  const std::string path = temp_path("eve.json");
  auto log = AlertLog::open(path);
  ASSERT_TRUE(log.ok());
  Harness h({{"s1", 1}, {"s2", 2}});
  h.start_svm(1, literal("block 1001 EVIL\nalert 1002 curl\n"), InspectMode::kPrevent, 1,
              log->get());
  h.start_svm(2, literal("block 2001 WORSE\n"), InspectMode::kDetect, 1, log->get());
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}, {2, {{"s2"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1, true), 1).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(2, false), 2).ok());
  ASSERT_TRUE(h.submit(1, kOut, "GET / curl \"quoted\"").ok());
  ASSERT_TRUE(h.submit(1, kOut, "EVIL").ok());
  ASSERT_TRUE(h.submit(2, Direction::kInbound, "WORSE").ok());  // detect: allowed, delivered
  ASSERT_TRUE(h.pump([&] { return h.blocked(1) && h.delivered[1][2] == "WORSE"; }));
  h.stop_svm(1);
  h.stop_svm(2);
  const auto lines = read_lines(path);
  std::remove(path.c_str());
  ASSERT_EQ(lines.size(), 3U);
  std::map<std::string, google::protobuf::Struct> by_rule;
  for (const auto& l : lines) {
    auto j = parse_json(l);
    for (const char* f : {"timestamp", "event_type", "guest", "stream_id", "src_ip", "src_port",
                          "dest_ip", "dest_port", "proto", "direction", "svm", "engine", "alert"}) {
      EXPECT_TRUE(j.fields().contains(f)) << f << " missing in " << l;
    }
    // ISO-8601 with microseconds: 2026-11-22T05:35:28.123456+0000
    const std::string ts = j.fields().at("timestamp").string_value();
    EXPECT_EQ(ts.size(), 31U) << ts;
    EXPECT_EQ(ts[10], 'T');
    EXPECT_EQ(ts[19], '.');
    by_rule[j.fields().at("alert").struct_value().fields().at("rule").string_value()] = j;
  }
  const auto& evil = by_rule.at("1001").fields();
  EXPECT_EQ(evil.at("alert").struct_value().fields().at("action").string_value(), "blocked");
  EXPECT_EQ(evil.at("alert").struct_value().fields().at("signature_id").number_value(), 1001);
  EXPECT_EQ(evil.at("src_ip").string_value(), "10.0.0.2");  // the guest connected: it is src
  EXPECT_EQ(evil.at("dest_port").number_value(), 80);
  EXPECT_EQ(evil.at("direction").string_value(), "outbound");
  EXPECT_EQ(evil.at("svm").string_value(), "s1");
  EXPECT_EQ(evil.at("engine").string_value(), "literal");
  EXPECT_EQ(evil.at("proto").string_value(), "TCP");
  const auto& curl = by_rule.at("1002").fields();
  EXPECT_EQ(curl.at("alert").struct_value().fields().at("action").string_value(), "allowed");
  const auto& worse = by_rule.at("2001").fields();
  EXPECT_EQ(worse.at("alert").struct_value().fields().at("action").string_value(), "allowed");
  // The guest accepted stream 2: the peer is the client (src), the guest the server (dest).
  EXPECT_EQ(worse.at("src_ip").string_value(), "10.0.0.9");
  EXPECT_EQ(worse.at("dest_port").number_value(), 40002);
  EXPECT_EQ(worse.at("direction").string_value(), "inbound");
  EXPECT_EQ(worse.at("flow").string_value(), "to_server");
}

}  // namespace
}  // namespace tosec::svm::test
