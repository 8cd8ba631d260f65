#include "tosec/cli/status.h"

#include <gtest/gtest.h>

namespace tosec::cli {
namespace {

const char* kToe =
    R"({"guest": "g0", "pid": 1234, "worker": 3, "cpus": "1,3", "uptime_s": 3725, "lanes": [{"lane": 0, "pid": 77},)"
    R"( {"lane": 1, "pid": 78}], "sockets": {"open": 1, "connecting": 2, "connected": 3,)"
    R"( "listening": 4, "closing": 5}, "bytes_from_guest": 1048576, "bytes_to_guest": 10,)"
    R"( "bytes_tx_wire": 0, "bytes_rx_wire": 1536, "rx_backpressure_events": 9,)"
    R"( "bad_descriptors": 2, "guests_reclaimed": 1, "rx_locks_released": 2})";

TEST(CliJson, ParsesTheToeStatus) {
  auto j = parse_json(kToe);
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_EQ(j->get("guest")->string, "g0");
  EXPECT_EQ(j->get("pid")->number, 1234);
  EXPECT_EQ(j->get("lanes")->array.size(), 2U);
  EXPECT_EQ(j->get("sockets")->get("listening")->number, 4);
  EXPECT_EQ(j->get("nope"), nullptr);
}

TEST(CliJson, RejectsGarbage) {
  EXPECT_FALSE(parse_json("").ok());
  EXPECT_FALSE(parse_json("{").ok());
  EXPECT_FALSE(parse_json("{\"a\": 1,}").ok());
  EXPECT_FALSE(parse_json("{\"a\": 1} x").ok());
  EXPECT_FALSE(parse_json(std::string(100, '[')).ok());  // too deep: no stack overflow
  EXPECT_TRUE(parse_json("[1, -2.5e3, true, false, null, \"a\\\"\\u00e9\"]").ok());
}

TEST(CliJson, QuoteEscapes) { EXPECT_EQ(json_quote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\""); }

TEST(CliStatusTable, ShowsEveryColumn) {
  const std::string t =
      render_status_table("/run/tosec", 42, {{"g0", kToe, ""}, {"g1", "", "connection refused"}});
  EXPECT_NE(t.find("supervisor pid 42"), std::string::npos) << t;
  EXPECT_NE(t.find("1234"), std::string::npos) << t;
  EXPECT_NE(t.find("1h02m"), std::string::npos) << t;
  EXPECT_NE(t.find("1/2/3/4/5"), std::string::npos) << t;
  EXPECT_NE(t.find("1.0 MiB"), std::string::npos) << t;
  EXPECT_NE(t.find("1.5 KiB"), std::string::npos) << t;
  EXPECT_NE(t.find("g0: guest processes (lanes): 77 78"), std::string::npos) << t;
  EXPECT_NE(t.find("g0: TOE worker 3 on CPUs 1,3"), std::string::npos) << t;
  EXPECT_NE(t.find("g0: guest processes reclaimed: 1"), std::string::npos) << t;
  EXPECT_NE(t.find("g0: receive locks freed after their process died: 2"), std::string::npos) << t;
  EXPECT_NE(t.find("g1               unreachable: connection refused"), std::string::npos) << t;
}

TEST(CliStatusTable, NoCpuLineWithoutACpuList) {
  const std::string t =
      render_status_table("/r", 1, {{"g0", R"({"pid": 1, "worker": 0, "cpus": ""})", ""}});
  EXPECT_EQ(t.find("TOE worker"), std::string::npos) << t;
  EXPECT_EQ(t.find("receive locks"), std::string::npos) << t;  // absent: no line
}

TEST(CliStatusTable, MissingFieldsShowAsDash) {
  const std::string t = render_status_table("/r", 1, {{"g0", "{\"pid\": \"x\"}", ""}});
  EXPECT_NE(t.find("g0               -"), std::string::npos) << t;
}

TEST(CliStatusJson, IsValidJsonWithEveryGuest) {
  const std::string j =
      render_status_json("/run/tosec", 42, {{"g0", kToe, ""}, {"g1", "", "refused"}});
  auto v = parse_json(j);
  ASSERT_TRUE(v.ok()) << j;
  EXPECT_EQ(v->get("runtime_dir")->string, "/run/tosec");
  EXPECT_EQ(v->get("supervisor_pid")->number, 42);
  ASSERT_EQ(v->get("guests")->array.size(), 2U);
  EXPECT_EQ(v->get("guests")->array[0].get("bytes_rx_wire")->number, 1536);
  EXPECT_EQ(v->get("guests")->array[1].get("error")->string, "refused");
  EXPECT_TRUE(parse_json(render_status_json("/r", 1, {})).ok());
}

}  // namespace
}  // namespace tosec::cli
