// Live chain changes in the InspectionPlane (update_chains while streams are open) and the
// per-SVM metrics the TOE exports (docs/svm.md, "Live changes" and "Metrics").
#include "harness.h"
#include "tosec/svm/latency_histogram.h"

namespace tosec::svm::test {
namespace {

constexpr auto kOut = Direction::kOutbound;

TEST(LatencyHistogram, BucketBoundsAreInclusive) {
  EXPECT_EQ(LatencyHistogram::bucket_of(0), 0U);
  EXPECT_EQ(LatencyHistogram::bucket_of(1000), 0U);  // 1 us: le 1
  EXPECT_EQ(LatencyHistogram::bucket_of(1001), 1U);
  EXPECT_EQ(LatencyHistogram::bucket_of(5000), 2U);
  EXPECT_EQ(LatencyHistogram::bucket_of(10'000'000), 12U);  // 10 ms: le 10000
  EXPECT_EQ(LatencyHistogram::bucket_of(10'000'001), 13U);  // +Inf
  EXPECT_EQ(LatencyHistogram::kBuckets, 14U);
}

TEST(LatencyHistogram, CumulativeBucketsSumAndCount) {
  LatencyHistogram h;
  h.record(500);         // le 1
  h.record(3'000);       // le 5
  h.record(3'000);       // le 5
  h.record(60'000'000);  // +Inf
  EXPECT_EQ(h.cumulative(0), 1U);
  EXPECT_EQ(h.cumulative(1), 1U);
  EXPECT_EQ(h.cumulative(2), 3U);
  EXPECT_EQ(h.cumulative(12), 3U);
  EXPECT_EQ(h.cumulative(13), 4U);
  EXPECT_EQ(h.count(), 4U);
  EXPECT_DOUBLE_EQ(h.sum_us(), 60'006.5);
  const auto j = parse_json(h.json());
  const auto& b = j.fields().at("buckets").list_value();
  ASSERT_EQ(b.values_size(), 14);
  EXPECT_EQ(b.values(0).list_value().values(0).number_value(), 1);
  EXPECT_EQ(b.values(2).list_value().values(1).number_value(), 3);
  EXPECT_EQ(b.values(13).list_value().values(0).string_value(), "+Inf");
  EXPECT_EQ(b.values(13).list_value().values(1).number_value(), 4);
  EXPECT_EQ(j.fields().at("count").number_value(), 4);
  EXPECT_NEAR(j.fields().at("sum").number_value(), 60'006.5, 0.001);
}

TEST(LiveChainChange, OpenStreamKeepsItsChainNewStreamTakesTheNewOne) {
  Harness h({{"s1", 1}, {"s2", 2}});
  h.start_svm(1, literal("block 1001 BAD1\n"));
  h.start_svm(2, literal("block 2001 BAD2\n"));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  // Chain 1 now goes through s2 instead of s1: stream 1 keeps s1, stream 2 gets s2.
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s2"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(2), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "BAD2 passes s1").ok());
  ASSERT_TRUE(h.submit(2, kOut, "BAD1 passes s2").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 2; }));
  EXPECT_TRUE(h.blocks.empty());
  ASSERT_TRUE(h.submit(1, kOut, "BAD1").ok());
  ASSERT_TRUE(h.submit(2, kOut, "BAD2").ok());
  ASSERT_TRUE(h.pump([&] { return h.blocked(1) && h.blocked(2); }));
  EXPECT_EQ(h.block_of(1).svm, "s1");
  EXPECT_EQ(h.block_of(2).svm, "s2");
}

TEST(LiveChainChange, RemovedChainKeepsItsOpenStreams) {
  Harness h({{"s1", 1}});
  h.start_svm(1, literal("block 1001 BAD1\n"));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  tosec::v1::ChainUpdate rm;
  rm.add_remove_ids(1);
  ASSERT_TRUE(h.plane().update_chains(rm).ok());
  auto r = h.plane().open_stream(stream_info(2), 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), ENOENT);
  ASSERT_TRUE(h.submit(1, kOut, "x BAD1").ok());  // the removed definition still inspects it
  ASSERT_TRUE(h.pump([&] { return h.blocked(1); }));
}

TEST(LiveChainChange, RejectedUpdateChangesNothing) {
  Harness h({{"s1", 1}, {"s2", 2}});
  h.start_svm(1, literal("block 1001 BAD1\n"));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1"}}, false}})).ok());
  // Chain 2 is fine, chain 1's new version names an unknown SVM: neither is applied.
  auto s = h.plane().update_chains(chains({{2, {{"s2"}}, false}, {1, {{"nope"}}, false}}));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("unknown svm 'nope'"), std::string::npos) << s.message();
  EXPECT_EQ(h.plane().open_stream(stream_info(2), 2).code(), ENOENT);
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "BAD1").ok());
  ASSERT_TRUE(h.pump([&] { return h.blocked(1); }));
  EXPECT_EQ(h.block_of(1).svm, "s1");
}

TEST(PlaneMetrics, PerSvmCountersAndLatency) {
  Harness h({{"s1", 1}, {"s2", 2}});
  h.start_svm(1, literal("alert 1002 NOTE\n"));
  h.start_svm(2, literal("block 2001 BAD2\n"));
  ASSERT_TRUE(h.plane().update_chains(chains({{1, {{"s1", "s2"}}, false}})).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(1), 1).ok());
  ASSERT_TRUE(h.plane().open_stream(stream_info(2), 1).ok());
  ASSERT_TRUE(h.submit(1, kOut, "plain").ok());
  ASSERT_TRUE(h.submit(1, kOut, "a NOTE").ok());
  ASSERT_TRUE(h.pump([&] { return h.deliveries == 2; }));
  ASSERT_TRUE(h.submit(2, kOut, "BAD2").ok());
  ASSERT_TRUE(h.pump([&] { return h.blocked(2); }));
  const auto st = h.plane().svm_stats();
  ASSERT_EQ(st.size(), 2U);
  EXPECT_EQ(st[0].name, "s1");
  EXPECT_EQ(st[0].node, 1);
  EXPECT_EQ(st[0].payloads, 3U);
  EXPECT_EQ(st[0].bytes, 15U);
  EXPECT_EQ(st[1].payloads, 3U);
  EXPECT_EQ(st[1].block, 1U);
  EXPECT_EQ(st[1].pass, 2U);
  // s1 passed the first two (its alert passes); its verdict on the third counts only if it came
  // before s2's block (afterwards it is stale). s2: two passes and the block.
  EXPECT_GE(st[0].pass, 2U);
  EXPECT_LE(st[0].pass, 3U);
  EXPECT_EQ(st[0].block, 0U);
  EXPECT_EQ(st[0].latency.count(), st[0].pass);
  EXPECT_EQ(st[1].latency.count(), 3U);
  EXPECT_EQ(st[1].latency.cumulative(LatencyHistogram::kBuckets - 1), 3U);
  const auto rings = h.plane().ring_stats();
  ASSERT_EQ(rings.size(), 4U);
  EXPECT_EQ(rings[0].name, "inspect.0-1");
  EXPECT_EQ(rings[1].name, "inspect.1-0");
  EXPECT_EQ(rings[0].capacity, Harness::small_config().ring_slots);
}

}  // namespace
}  // namespace tosec::svm::test
