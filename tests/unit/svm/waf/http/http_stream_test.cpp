// HttpStreamParser against real libhtp: events, normalization, de-chunking, inflation,
// pipelining, splits at every byte, close-delimited bodies, parse errors.
#include "tosec/svm/engines/http_stream.h"

#include <gtest/gtest.h>

#include <array>
#include <string>

#include "recording_events.h"

namespace tosec::svm::http {
namespace {

using testing::bytes;
using testing::client_stream;
using testing::RecordingEvents;

std::shared_ptr<const HttpParserConfig> config() {
  auto c = HttpParserConfig::create();
  EXPECT_TRUE(c.ok());
  return *c;
}

const std::string kGet =
    "GET /shop/./items/../list.php?id=42&sort=asc HTTP/1.1\r\n"
    "Host: shop.example\r\n"
    "User-Agent: test/1.0\r\n"
    "\r\n";

TEST(HttpStream, GetRequestEventsInOrder) {
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, client_stream());
  p.to_server(bytes(kGet));
  const std::vector<std::string> want = {
      "0 req_line GET /shop/./items/../list.php?id=42&sort=asc path=/shop/list.php "
      "query=id=42&sort=asc v=1.1",
      "0 req_hdr Host: shop.example",
      "0 req_hdr User-Agent: test/1.0",
      "0 req_hdrs_end",
      "0 req_done",
  };
  EXPECT_EQ(ev.events, want);
  EXPECT_EQ(p.requests_seen(), 1u);
  EXPECT_EQ(ev.fatal_anomalies, 0);
}

TEST(HttpStream, PathIsNormalizedIncludingEncodedDots) {
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, client_stream());
  p.to_server(bytes("GET /a/./b/../%2e%2e/etc/passwd HTTP/1.0\r\n\r\n"));
  ASSERT_FALSE(ev.events.empty());
  EXPECT_EQ(ev.events[0],
            "0 req_line GET /a/./b/../%2e%2e/etc/passwd path=/etc/passwd query= v=1.0");
}

TEST(HttpStream, ChunkedRequestBodyIsDechunked) {
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, client_stream());
  p.to_server(
      bytes("POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
  EXPECT_EQ(ev.request_bodies[0], "hello world");
  EXPECT_TRUE(ev.has("0 req_done"));
}

TEST(HttpStream, ResponseWithStatusContentTypeAndBody) {
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, client_stream());
  p.to_server(bytes(kGet));
  p.to_client(
      bytes("HTTP/1.1 404 Not Found\r\nContent-Type: text/HTML; charset=utf-8\r\n"
            "Content-Length: 5\r\n\r\nnope!"));
  EXPECT_TRUE(ev.has("0 res_line 404 v=1.1 Not Found"));
  EXPECT_TRUE(ev.has("0 res_hdrs_end ct=text/html"));
  EXPECT_TRUE(ev.has("0 res_body nope!"));
  EXPECT_TRUE(ev.has("0 res_done"));
}

TEST(HttpStream, GzipResponseBodyIsInflated) {
  static constexpr std::array<unsigned char, 46> kGz = {
      0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xb3, 0xc9,
      0x28, 0xc9, 0xcd, 0xb1, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0x48, 0xaf,
      0xca, 0x2c, 0x50, 0x28, 0xcf, 0x2f, 0xca, 0x49, 0xb1, 0xd1, 0x07, 0x0b,
      0x03, 0x00, 0xed, 0xfe, 0x89, 0xec, 0x1d, 0x00, 0x00, 0x00};
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, client_stream());
  p.to_server(bytes(kGet));
  std::string res =
      "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
      "Content-Length: 46\r\n\r\n";
  res.append(reinterpret_cast<const char*>(kGz.data()), kGz.size());
  p.to_client(bytes(res));
  EXPECT_EQ(ev.response_bodies[0], "<html>hello gzip world</html>");
}

TEST(HttpStream, PipelinedRequestsAndResponsesPairInOrder) {
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, client_stream());
  p.to_server(
      bytes("GET /first HTTP/1.1\r\nHost: h\r\n\r\n"
            "POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"));
  p.to_client(
      bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nr1"
            "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nr2"));
  EXPECT_TRUE(ev.has("0 req_line GET /first path=/first query= v=1.1"));
  EXPECT_TRUE(ev.has("1 req_line POST /second path=/second query= v=1.1"));
  EXPECT_EQ(ev.request_bodies[1], "abc");
  EXPECT_TRUE(ev.has("0 res_line 200 v=1.1 OK"));
  EXPECT_TRUE(ev.has("1 res_line 201 v=1.1 Created"));
  EXPECT_EQ(ev.response_bodies[0], "r1");
  EXPECT_EQ(ev.response_bodies[1], "r2");
  EXPECT_EQ(p.requests_seen(), 2u);
}

TEST(HttpStream, ByteByByteFeedGivesTheSameEvents) {
  const std::string req =
      "POST /a?b=c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
      "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string res =
      "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n";
  RecordingEvents whole;
  {
    HttpStreamParser p(config(), whole, client_stream());
    p.to_server(bytes(req));
    p.to_client(bytes(res));
  }
  RecordingEvents split;
  {
    HttpStreamParser p(config(), split, client_stream());
    for (char c : req) p.to_server(bytes(std::string_view(&c, 1)));
    for (char c : res) p.to_client(bytes(std::string_view(&c, 1)));
  }
  EXPECT_EQ(whole.events, split.events);
  EXPECT_EQ(whole.request_bodies, split.request_bodies);
  EXPECT_EQ(whole.response_bodies, split.response_bodies);
  EXPECT_TRUE(split.has("1 res_body xy"));
}

TEST(HttpStream, CloseCompletesAResponseDelimitedByTheConnection) {
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, client_stream());
  p.to_server(bytes(kGet));
  p.to_client(bytes("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"));
  EXPECT_FALSE(ev.has("0 res_done"));
  p.close();
  EXPECT_TRUE(ev.has("0 res_body until close"));
  EXPECT_TRUE(ev.has("0 res_done"));
  p.close();                 // idempotent
  p.to_server(bytes(kGet));  // ignored after close
  EXPECT_EQ(p.requests_seen(), 1u);
}

TEST(HttpStream, InvalidChunkLengthIsAFatalRequestAnomalyNotACrash) {
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, client_stream());
  p.to_server(
      bytes("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nZZZZ\r\nabc\r\n"));
  p.to_server(bytes("more bytes after the error\r\n"));
  EXPECT_TRUE(p.failed(Flow::kToServer));
  EXPECT_FALSE(p.failed(Flow::kToClient));
  EXPECT_GE(ev.fatal_anomalies, 1);
  ASSERT_FALSE(ev.anomalies.empty());
  EXPECT_EQ(ev.anomalies.back().rfind("req fatal ", 0), 0u) << ev.anomalies.back();
}

TEST(HttpStream, ResponseWithoutRequestIsReportedNotFatal) {
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, client_stream());
  p.to_client(bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"));
  EXPECT_TRUE(ev.has("0 res_line 200 v=1.1 OK"));
  EXPECT_FALSE(ev.anomalies.empty());  // "Unable to match response to request"
  EXPECT_EQ(ev.fatal_anomalies, 0);
}

TEST(HttpStream, ServerSideStreamUsesTheGuestAsServer) {
  StreamInfo info = client_stream();
  info.guest_is_client = false;
  RecordingEvents ev;
  HttpStreamParser p(config(), ev, info);
  p.feed(info.flow_of(Direction::kInbound), bytes(kGet));  // the wire sends the request
  EXPECT_TRUE(ev.has("0 req_done"));
  EXPECT_EQ(endpoint_address(info.local), "10.0.0.2");
}

TEST(HttpStream, ConfigRejectsSoftLimitAboveHardLimit) {
  HttpParserOptions o;
  o.field_soft_limit = 100;
  o.field_hard_limit = 10;
  auto c = HttpParserConfig::create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("field_soft_limit"), std::string::npos);
}

}  // namespace
}  // namespace tosec::svm::http
