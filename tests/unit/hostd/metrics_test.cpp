// Prometheus exposition: families once each with HELP/TYPE, labels escaped, the TOE's optional
// "metrics" object rendered when present and skipped when absent; the HTTP server answers GET.
#include "tosec/hostd/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>
#include <sstream>

namespace {

using tosec::cli::GuestStatus;
using tosec::hostd::RoleInfo;

const char* const kBasic =
    R"({"guest":"web","pid":42,"worker":0,"uptime_s":3,"lanes":[7],"sockets":{"open":1,)"
    R"("connecting":0,"connected":2,"listening":1,"closing":0},"bytes_from_guest":100,)"
    R"("bytes_to_guest":200,"bytes_tx_wire":100,"bytes_rx_wire":200,)"
    R"("rx_backpressure_events":0,"bad_descriptors":3,"guests_reclaimed":0,)"
    R"("rx_locks_released":1})";

const char* const kWithMetrics =
    R"({"guest":"web","bytes_from_guest":1,"topology_generation":4,"inspection":{"inflight":2,)"
    R"("deadline_misses":1},"metrics":{"streams":)"
    R"({"inspected":5,"blocked":1,"passed_bytes":900},"svms":[{"name":"ids","node":1,)"
    R"("payloads":6,"bytes":700,"pass":5,"alert":1,"block":1,"latency_us":{"buckets":)"
    R"([[1,0],[10,2],[100,6],["+Inf",6]],"sum":250.5,"count":6}}],"rings":[{"name":)"
    R"("lane0.req","capacity":256,"occupancy":0,"drops":0}]}})";

// Every line is a comment or "name{labels} value" with a float value.
void expect_valid_exposition(const std::string& text) {
  const std::regex sample(
      R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+0-9.eEInfa]+$)");
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << "bad line: " << line;
  }
}

TEST(HostdMetrics, GuestFieldsAndRoles) {
  const std::string text =
      tosec::hostd::render_metrics({GuestStatus{"web", kBasic, ""}, GuestStatus{"db", "", "down"}},
                                   {RoleInfo{"tovm", "tovm", "running", 42, 2, 0}}, 3);
  expect_valid_exposition(text);
  EXPECT_NE(text.find("# TYPE tosec_guest_bytes_from_guest_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("tosec_guest_sockets{guest=\"web\",state=\"connected\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("tosec_guest_up{guest=\"db\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("tosec_guest_rx_locks_released_total{guest=\"web\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("tosec_role_restarts_total{role=\"tovm\",kind=\"tovm\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("tosec_topology_generation 3\n"), std::string::npos);
  EXPECT_EQ(text.find("tosec_svm_"), std::string::npos);  // absent, not faked
  // One TYPE line per family even with two guests.
  std::size_t n = 0;
  for (auto p = text.find("# TYPE tosec_guest_up "); p != std::string::npos;
       p = text.find("# TYPE tosec_guest_up ", p + 1)) {
    ++n;
  }
  EXPECT_EQ(n, 1U);
}

TEST(HostdMetrics, TheToesMetricsObject) {
  const std::string text =
      tosec::hostd::render_metrics({GuestStatus{"web", kWithMetrics, ""}}, {}, 4);
  expect_valid_exposition(text);
  EXPECT_NE(text.find("tosec_svm_verdicts_total{guest=\"web\",svm=\"ids\",verdict=\"block\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE tosec_svm_latency_seconds histogram\n"), std::string::npos);
  EXPECT_NE(
      text.find("tosec_svm_latency_seconds_bucket{guest=\"web\",svm=\"ids\",le=\"+Inf\"} 6\n"),
      std::string::npos);
  EXPECT_NE(text.find("tosec_svm_latency_seconds_count{guest=\"web\",svm=\"ids\"} 6\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("tosec_svm_latency_seconds_bucket{guest=\"web\",svm=\"ids\",le=\"1e-05\"} 2\n"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("tosec_ring_capacity{guest=\"web\",ring=\"lane0.req\"} 256\n"),
            std::string::npos);
  EXPECT_NE(text.find("tosec_streams_blocked_total{guest=\"web\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("tosec_guest_topology_generation{guest=\"web\"} 4\n"), std::string::npos);
  EXPECT_NE(
      text.find(
          "# TYPE tosec_inspection_inflight gauge\ntosec_inspection_inflight{guest=\"web\"} 2\n"),
      std::string::npos);
  EXPECT_NE(text.find("tosec_inspection_deadline_misses_total{guest=\"web\"} 1\n"),
            std::string::npos);
}

TEST(HostdMetrics, LabelValuesAreEscaped) {
  const std::string text =
      tosec::hostd::render_metrics({}, {RoleInfo{"a\"b\\c", "svm", "stopped", 0, 0, 0}}, 1);
  EXPECT_NE(text.find("role=\"a\\\"b\\\\c\""), std::string::npos) << text;
  expect_valid_exposition(text);
}

std::string http_get(const std::string& address, const std::string& path) {
  const auto colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoul(address.substr(colon + 1))));
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return "connect failed";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\n\r\n";
  EXPECT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

TEST(HostdMetrics, ServerAnswersMetricsAnd404) {
  tosec::hostd::MetricsServer server;
  ASSERT_TRUE(server.start("127.0.0.1:0", [] { return std::string("tosec_hostd_up 1\n"); }));
  const std::string ok = http_get(server.bound_address(), "/metrics");
  EXPECT_TRUE(ok.starts_with("HTTP/1.0 200 OK\r\n")) << ok;
  EXPECT_NE(ok.find("text/plain; version=0.0.4"), std::string::npos);
  EXPECT_TRUE(ok.ends_with("\r\n\r\ntosec_hostd_up 1\n")) << ok;
  EXPECT_TRUE(http_get(server.bound_address(), "/other").starts_with("HTTP/1.0 404"));
  server.stop();
}

TEST(HostdMetrics, BadListenAddressIsNamed) {
  tosec::hostd::MetricsServer server;
  auto s = server.start("localhost", [] { return std::string(); });
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("\"localhost\" is not an IPv4 address and port"), std::string::npos);
}

}  // namespace
