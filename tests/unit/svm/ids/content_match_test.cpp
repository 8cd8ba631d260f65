// Payload semantics of the subset through the real engine: offset/depth (from the start of the
// stream direction), distance/within, nocase, pcre with flags and R, negations, header matching.
#include <gtest/gtest.h>

#include "ids_test_support.h"

namespace tosec::svm::ids_test {
namespace {

// Fires `rule` (sid 1) over the to_server payloads; true when sid:1 is reported by any of them
// or by finish().
bool fires(const std::string& rule, std::initializer_list<std::string_view> payloads,
           std::map<std::string, std::string> options = {}) {
  TempDir dir;
  auto engine = engine_from(dir, rule, std::move(options));
  if (!engine) return false;
  auto thread = thread_of(*engine);
  StreamDriver s(*thread, client_stream());
  bool hit = false;
  for (auto p : payloads) hit |= has_finding(s.to_server(p), "sid:1");
  hit |= has_finding(s.finish(), "sid:1");
  return hit;
}

const char* kAny = "alert tcp any any -> any any ";

std::string rule(const std::string& options) {
  return std::string(kAny) + "(msg:\"t\"; " + options + " sid:1;)";
}

TEST(IdsContent, DepthCountsFromStreamStart) {
  const auto r = rule("content:\"GET\"; depth:3;");
  EXPECT_TRUE(fires(r, {"GET / HTTP/1.1\r\n"}));
  EXPECT_FALSE(fires(r, {" GET / HTTP/1.1\r\n"}));
  // The second request of a keep-alive stream is not at stream offset 0: documented choice.
  EXPECT_FALSE(fires(r, {"HEAD / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\n"}));
}

TEST(IdsContent, OffsetAndDepthAcrossPayloads) {
  const auto r = rule("content:\"abc\"; offset:5; depth:4;");
  EXPECT_TRUE(fires(r, {"12345abc"}));
  EXPECT_TRUE(fires(r, {"123", "45", "xa", "bc"}));  // ends at 9 <= 5+4
  EXPECT_FALSE(fires(r, {"12abc"}));
  EXPECT_FALSE(fires(r, {"12345", "xyabc"}));  // starts at 7: ends after 5+4
}

TEST(IdsContent, OffsetOnANonPrefilterContentIsVerified) {
  const auto r = rule("content:\"LONGPATTERN\"; content:\"ab\"; offset:2; depth:2;");
  EXPECT_TRUE(fires(r, {"xxab LONGPATTERN"}));
  EXPECT_FALSE(fires(r, {"xab LONGPATTERN"}));
}

TEST(IdsContent, DistanceAndWithin) {
  const auto r = rule("content:\"foo\"; content:\"bar\"; distance:2; within:4;");
  EXPECT_TRUE(fires(r, {"foo..bar"}));
  EXPECT_TRUE(fires(r, {"foo...bar"}));  // ends at prev_end + 2 + 4
  EXPECT_FALSE(fires(r, {"foobar"}));    // starts before prev_end + 2
  EXPECT_FALSE(fires(r, {"foo....bar"}));
  // Across payload boundaries, in both places.
  EXPECT_TRUE(fires(r, {"fo", "o..", "b", "ar"}));
  EXPECT_FALSE(fires(r, {"fo", "o....", "b", "ar"}));
}

TEST(IdsContent, PrefilterOnTheFirstContentWaitsForTheRest) {
  // The longest content comes first, so its hit arrives before the content that completes it.
  const auto r =
      rule("content:\"GET /cgi-bin/evil-\"; content:\"payload.sh\"; distance:0; within:10;");
  EXPECT_TRUE(fires(r, {"GET /cgi-bin/evil-", "payload.sh HTTP/1.1\r\n"}));
  EXPECT_FALSE(fires(r, {"GET /cgi-bin/evil-", "x", "payload.sh HTTP/1.1\r\n"}));
}

TEST(IdsContent, BacktracksToALaterOccurrence) {
  const auto r = rule("content:\"a=\"; content:\"X\"; distance:0; within:1;");
  EXPECT_TRUE(fires(r, {"a=1&a=X"}));
  EXPECT_FALSE(fires(r, {"a=1&b=X"}));
}

TEST(IdsContent, NegativeDistanceLooksBack) {
  const auto r = rule("content:\"world\"; content:\"hello\"; distance:-11; within:5;");
  EXPECT_TRUE(fires(r, {"hello world"}));
  EXPECT_FALSE(fires(r, {"hello  world"}));
}

TEST(IdsContent, Nocase) {
  EXPECT_TRUE(fires(rule("content:\"EvIl\"; nocase;"), {"this is eViL"}));
  EXPECT_FALSE(fires(rule("content:\"EvIl\";"), {"this is eViL"}));
  // nocase on a content that is verified, not prefiltered.
  const auto r = rule("content:\"LONGPREFIX\"; content:\"ab\"; nocase; distance:0;");
  EXPECT_TRUE(fires(r, {"LONGPREFIX AB"}));
  EXPECT_FALSE(
      fires(rule("content:\"LONGPREFIX\"; content:\"ab\"; distance:0;"), {"LONGPREFIX AB"}));
  EXPECT_FALSE(fires(rule("content:\"LONGPREFIX\"; nocase;"), {"longprefi"}));
}

TEST(IdsContent, HexBytesIncludingNul) {
  EXPECT_TRUE(fires(rule("content:\"|00 ff|ab|0d 0a|\";"), {std::string_view("x\0\xff"
                                                                             "ab\r\n",
                                                                             7)}));
  EXPECT_FALSE(fires(rule("content:\"|00 ff|ab|0d 0a|\";"), {"x\xff"
                                                             "ab\r\n"}));
}

TEST(IdsPcre, FlagsAndPlainMatch) {
  EXPECT_TRUE(fires(rule("pcre:\"/id=\\d+'/\";"), {"GET /?id=42' HTTP/1.1"}));
  EXPECT_FALSE(fires(rule("pcre:\"/id=\\d+'/\";"), {"GET /?id=x' HTTP/1.1"}));
  EXPECT_TRUE(fires(rule("pcre:\"/SELECT/i\";"), {"select"}));
  EXPECT_FALSE(fires(rule("pcre:\"/SELECT/\";"), {"select"}));
  EXPECT_TRUE(fires(rule("pcre:\"/a.b/s\";"), {"a\nb"}));
  EXPECT_FALSE(fires(rule("pcre:\"/a.b/\";"), {"a\nb"}));
  EXPECT_TRUE(fires(rule("pcre:\"/^line2/m\";"), {"line1\nline2"}));
  EXPECT_FALSE(fires(rule("pcre:\"/^line2/\";"), {"line1\nline2"}));
  EXPECT_TRUE(fires(rule("pcre:\"/a b c/x\";"), {"abc"}));
  // A pcre split across payloads is still found.
  EXPECT_TRUE(fires(rule("pcre:\"/evil\\d{3}payload/\";"), {"xx evil1", "23pay", "load"}));
}

TEST(IdsPcre, RelativeToThePreviousContent) {
  const auto r = rule("content:\"user=\"; pcre:\"/^admin/R\";");
  EXPECT_TRUE(fires(r, {"?user=admin"}));
  EXPECT_FALSE(fires(r, {"?user=bob&x=admin"}));
  EXPECT_TRUE(fires(r, {"?user=bob&user=admin"}));  // backtracks to the second user=
  // Content after a pcre is relative to the pcre's end.
  EXPECT_TRUE(
      fires(rule("content:\"key=\"; pcre:\"/\\d+/R\"; content:\"!\"; distance:0; within:1;"),
            {"key=123!"}));
  EXPECT_FALSE(
      fires(rule("content:\"key=\"; pcre:\"/\\d+/R\"; content:\"!\"; distance:0; within:1;"),
            {"key=123 !"}));
}

TEST(IdsNegation, ContentAndPcre) {
  // Unbounded negation: absent from the bytes seen so far.
  const auto r = rule("content:\"GET \"; content:!\"Host|3a|\";");
  EXPECT_TRUE(fires(r, {"GET / HTTP/1.0\r\n\r\n"}));
  EXPECT_FALSE(fires(r, {"GET / HTTP/1.1\r\nHost: a\r\n\r\n"}));
  // Bounded negation is decided once its whole range has arrived.
  const auto b = rule("content:\"login\"; content:!\"secure\"; distance:0; within:20;");
  EXPECT_FALSE(fires(b, {"login", " over secure channel.........."}));
  EXPECT_TRUE(fires(b, {"login", " over plain channel..........."}));
  EXPECT_TRUE(fires(b, {"login"}));  // the stream ended before the range: decided at finish()
  const auto p = rule("content:\"cmd=\"; pcre:!\"/cmd=(ls|pwd)\\b/\";");
  EXPECT_TRUE(fires(p, {"cmd=rm"}));
  EXPECT_FALSE(fires(p, {"cmd=ls"}));
}

TEST(IdsHeader, FlowDirection) {
  TempDir dir;
  auto engine =
      engine_from(dir,
                  "alert tcp any any -> any any (flow:to_server; content:\"REQ\"; sid:1;)\n"
                  "alert tcp any any -> any any (flow:to_client; content:\"RESP\"; sid:2;)\n"
                  "alert tcp any any -> any any (content:\"BOTH\"; sid:3;)\n");
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  StreamDriver s(*thread, client_stream());
  EXPECT_TRUE(s.to_client("REQ RESP").findings.size() == 1);
  StreamDriver s2(*thread, client_stream(2));
  const Verdict v = s2.to_client("REQ RESP BOTH");
  EXPECT_FALSE(has_finding(v, "sid:1"));
  EXPECT_TRUE(has_finding(v, "sid:2"));
  EXPECT_TRUE(has_finding(v, "sid:3"));
  const Verdict w = s2.to_server("REQ RESP BOTH");
  EXPECT_TRUE(has_finding(w, "sid:1"));
  EXPECT_FALSE(has_finding(w, "sid:2"));
  EXPECT_TRUE(has_finding(w, "sid:3"));  // once per direction
}

TEST(IdsHeader, PortsAddressesAndGuestRole) {
  TempDir dir;
  auto engine = engine_from(dir,
                            "alert tcp any any -> 192.0.2.0/24 80 (content:\"X\"; sid:1;)\n"
                            "alert tcp any 80 -> any any (content:\"Y\"; sid:2;)\n"
                            "alert tcp any any <> 203.0.113.9 any (content:\"Z\"; sid:3;)\n"
                            "alert udp any any -> any any (content:\"U\"; sid:4;)\n");
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  {  // guest 10.0.0.2 -> 192.0.2.80:80
    StreamDriver s(*thread, client_stream(1, 80));
    const Verdict req = s.to_server("X Y Z U");
    EXPECT_TRUE(has_finding(req, "sid:1"));
    EXPECT_FALSE(has_finding(req, "sid:2"));  // the client's port is not 80
    EXPECT_FALSE(has_finding(req, "sid:3"));
    EXPECT_FALSE(has_finding(req, "sid:4"));  // tcp stream
    const Verdict resp = s.to_client("X Y Z");
    EXPECT_FALSE(has_finding(resp, "sid:1"));
    EXPECT_TRUE(has_finding(resp, "sid:2"));  // the server (port 80) sends
  }
  {  // same peer on 8080
    StreamDriver s(*thread, client_stream(2, 8080));
    EXPECT_TRUE(s.to_server("X").findings.empty());
  }
  {  // the guest is the server: 203.0.113.9:5555 connects to the guest's port 80
    StreamInfo info = client_stream(3, 5555);
    info.remote = ipv4("203.0.113.9", 5555);
    info.local = ipv4("10.0.0.2", 80);
    info.guest_is_client = false;
    StreamDriver s(*thread, info);
    const Verdict req = s.to_server("X Y Z");  // the peer's request, inbound to the guest
    EXPECT_FALSE(has_finding(req, "sid:1"));
    EXPECT_FALSE(has_finding(req, "sid:2"));
    EXPECT_TRUE(has_finding(req, "sid:3"));   // <>: either way round
    const Verdict resp = s.to_client("Y Z");  // the guest answers from port 80
    EXPECT_TRUE(has_finding(resp, "sid:2"));
    EXPECT_TRUE(has_finding(resp, "sid:3"));
  }
  {  // udp
    StreamInfo info = client_stream(4, 53);
    info.protocol = 17;
    StreamDriver s(*thread, info);
    EXPECT_TRUE(has_finding(s.to_server("U X"), "sid:4"));
  }
}

TEST(IdsVerdict, ActionsFindingsAndPass) {
  TempDir dir;
  auto engine = engine_from(dir,
                            "alert tcp any any -> any any (msg:\"m1\"; content:\"A1\"; "
                            "classtype:c1; sid:1;)\n"
                            "drop tcp any any -> any any (msg:\"m2\"; content:\"D2\"; sid:2;)\n"
                            "reject tcp any any -> any any (msg:\"m3\"; content:\"R3\"; sid:3;)\n"
                            "pass tcp any any -> any any (content:\"TRUSTED\"; sid:4;)\n");
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  StreamDriver s(*thread, client_stream());
  Verdict v = s.to_server("A1");
  EXPECT_EQ(v.action, Action::kAlert);
  ASSERT_EQ(v.findings.size(), 1u);
  EXPECT_EQ(v.findings[0].rule_id, "sid:1");
  EXPECT_EQ(v.findings[0].message, "m1");
  EXPECT_EQ(v.findings[0].category, "c1");
  EXPECT_TRUE(s.to_server("A1 again").findings.empty());  // once per stream direction
  EXPECT_EQ(s.to_server("R3").action, Action::kBlock);
  StreamDriver s2(*thread, client_stream(2));
  EXPECT_EQ(s2.to_server("D2").action, Action::kBlock);
  // pass wins over everything in the same payload and silences the rest of the stream.
  StreamDriver s3(*thread, client_stream(3));
  EXPECT_TRUE(s3.to_server("D2 TRUSTED").findings.empty());
  EXPECT_TRUE(s3.to_server("R3").findings.empty());
  EXPECT_TRUE(s3.to_client("D2").findings.empty());
  EXPECT_TRUE(s3.finish().findings.empty());
}

TEST(IdsVerdict, NoFindingsOnBenignTraffic) {
  TempDir dir;
  auto engine = engine_from(dir, rule("content:\"evil\"; pcre:\"/evil\\d/\";"));
  ASSERT_TRUE(engine);
  auto thread = thread_of(*engine);
  StreamDriver s(*thread, client_stream());
  const Verdict v = s.to_server("GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n");
  EXPECT_EQ(v.action, Action::kPass);
  EXPECT_TRUE(v.findings.empty());
  EXPECT_EQ(v.findings.capacity(), 0u);  // nothing allocated on the pass path
  EXPECT_TRUE(s.finish().findings.empty());
}

}  // namespace
}  // namespace tosec::svm::ids_test
