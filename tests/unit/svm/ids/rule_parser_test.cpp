// The rule subset: what parses, what it means, and that everything else is rejected with the
// right file, line and sid.
#include <gtest/gtest.h>

#include "ids_test_support.h"
#include "tosec/svm/engines/ids_rule.h"

namespace tosec::svm::ids {
namespace {

using ids_test::ipv4;

std::vector<Rule> parse_ok(const std::string& text) {
  auto r = parse_ids_rules(text, "ids.rules");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : std::vector<Rule>{};
}

std::string parse_error(const std::string& text) {
  auto r = parse_ids_rules(text, "ids.rules");
  return r.ok() ? std::string("<parsed>") : r.error().message;
}

TEST(IdsRuleParser, AcceptsEveryOptionOfTheSubset) {
  const auto rules = parse_ok(
      "# comment\n"
      "\n"
      "drop tcp any any -> 192.0.2.0/24 [80,8000:8100] (msg:\"semi\\;colon \\\"q\\\"\"; "
      "flow:to_server,established; content:\"GET\"; depth:3; offset:0; "
      "content:\"a|3b 22|b\\;c\"; nocase; distance:1; within:40; fast_pattern; "
      "content:!\"safe\"; pcre:\"/id=\\d+'/Ri\"; pcre:!\"/x{3}/smx\"; "
      "gid:1; sid:1000001; rev:7; classtype:web-application-attack; priority:2; "
      "reference:url,example.org; metadata:created 2026; metadata:tosec demo;)\n");
  ASSERT_EQ(rules.size(), 1u);
  const Rule& r = rules[0];
  EXPECT_EQ(r.line, 3u);
  EXPECT_EQ(r.action, RuleAction::kDrop);
  EXPECT_EQ(r.protocol, RuleProtocol::kTcp);
  EXPECT_EQ(r.flow, RuleFlow::kToServer);
  EXPECT_EQ(r.sid, 1000001u);
  EXPECT_EQ(r.rev, 7u);
  EXPECT_EQ(r.priority, 2u);
  EXPECT_EQ(r.msg, "semi;colon \"q\"");
  EXPECT_EQ(r.classtype, "web-application-attack");
  EXPECT_EQ(r.references.size(), 1u);
  EXPECT_EQ(r.metadata.size(), 2u);
  ASSERT_EQ(r.elements.size(), 5u);
  EXPECT_EQ(r.elements[0].bytes, "GET");
  EXPECT_EQ(r.elements[0].depth, 3u);
  EXPECT_EQ(r.elements[1].bytes, "a;\"b;c");
  EXPECT_TRUE(r.elements[1].nocase);
  EXPECT_EQ(r.elements[1].distance, 1);
  EXPECT_EQ(r.elements[1].within, 40u);
  EXPECT_TRUE(r.elements[2].negated);
  EXPECT_EQ(r.elements[3].kind, RuleElement::Kind::kPcre);
  EXPECT_EQ(r.elements[3].pattern, "id=\\d+'");
  EXPECT_TRUE(r.elements[3].relative);
  EXPECT_TRUE(r.elements[3].caseless);
  EXPECT_TRUE(r.elements[4].negated);
  EXPECT_TRUE(r.elements[4].dotall && r.elements[4].multiline && r.elements[4].extended);
  EXPECT_EQ(r.fast_pattern, 1u);  // explicit fast_pattern wins over length
}

TEST(IdsRuleParser, ActionsProtocolsAndFastPatternDefault) {
  const auto rules = parse_ok(
      "alert udp any any -> any 53 (content:\"ab\"; content:\"abcd\"; sid:1;)\n"
      "reject ip any any <> any any (content:\"x\"; sid:2;)\n"
      "pass http any any -> any any (pcre:\"/a+b/\"; sid:3;)\n");
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0].protocol, RuleProtocol::kUdp);
  EXPECT_EQ(rules[0].fast_pattern, 1u);  // the longest content
  EXPECT_EQ(rules[1].action, RuleAction::kReject);
  EXPECT_TRUE(rules[1].bidirectional);
  EXPECT_EQ(rules[2].action, RuleAction::kPass);
  EXPECT_EQ(rules[2].protocol, RuleProtocol::kHttp);
  EXPECT_EQ(rules[2].fast_pattern, 0u);  // the pcre is the prefilter
}

TEST(IdsRuleParser, MultiLineRulesKeepTheirFirstLine) {
  const std::string text =
      "alert tcp any any -> any any (msg:\"two\"; \\\n"
      "   content:\"a\"; \\\n"
      "   sid:1;)\n"
      "alert tcp any any -> any any (content:\"b\"; byte_test:1,>,2,0; sid:2;)\n";
  EXPECT_EQ(parse_error(text), "ids.rules:4: unsupported rule option 'byte_test' in sid 2");
  const auto rules = parse_ok(text.substr(0, text.find("alert", 10)));
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].line, 1u);
  EXPECT_EQ(rules[0].msg, "two");
}

TEST(IdsRuleParser, UnsupportedOptionNamesFileLineAndSid) {
  std::string text;
  for (int i = 1; i <= 11; ++i) {
    text += i % 3 == 0 ? "alert tcp any any -> any any (content:\"ok" + std::to_string(i) +
                             "\"; sid:" + std::to_string(1000000 + i) + ";)\n"
                       : "# filler\n";
  }
  text +=
      "alert tcp any any -> any any (msg:\"x\"; content:\"a\"; byte_test:4,>,1000,0; "
      "sid:1000003;)\n";
  EXPECT_EQ(parse_error(text), "ids.rules:12: unsupported rule option 'byte_test' in sid 1000003");
}

struct Rejection {
  const char* rules;
  const char* message;  // expected substring, including "ids.rules:<line>:"
};

class IdsRuleRejections : public ::testing::TestWithParam<Rejection> {};

TEST_P(IdsRuleRejections, NamesLineAndProblem) {
  const std::string err = parse_error(GetParam().rules);
  EXPECT_NE(err.find(GetParam().message), std::string::npos) << "got: " << err;
}

INSTANTIATE_TEST_SUITE_P(
    Subset, IdsRuleRejections,
    ::testing::Values(
        Rejection{"\nlog tcp any any -> any any (content:\"a\"; sid:1;)",
                  "ids.rules:2: unknown action 'log'"},
        Rejection{"alert icmp any any -> any any (content:\"a\"; sid:1;)",
                  "ids.rules:1: unsupported protocol 'icmp'"},
        Rejection{"alert tcp $HOME_NET any -> any any (content:\"a\"; sid:1;)",
                  "ids.rules:1: source address: address variables like '$HOME_NET' are not "
                  "supported"},
        Rejection{"alert tcp any any -> any $HTTP_PORTS (content:\"a\"; sid:1;)",
                  "destination port: port variables"},
        Rejection{"alert tcp any any -> any any (content:\"a\";)", "ids.rules:1: rule has no sid"},
        Rejection{"alert tcp any any -> any any (content:\"a\"; sid:5;)\n\n"
                  "alert tcp any any -> any any (content:\"b\"; sid:5;)",
                  "ids.rules:3: duplicate sid 5 (first defined at ids.rules:1)"},
        Rejection{"alert tcp any any -> any any (pcre:\"/a/U\"; sid:9;)",
                  "ids.rules:1: unsupported pcre flag 'U' (supported: i s m x R) in sid 9"},
        Rejection{"alert tcp any any -> any any (nocase; content:\"a\"; sid:9;)",
                  "'nocase' needs a preceding content in sid 9"},
        Rejection{"alert tcp any any -> any any (content:\"abcd\"; depth:2; sid:9;)",
                  "depth 2 is shorter than its content (4 bytes) in sid 9"},
        Rejection{"alert tcp any any -> any any (content:\"a\"; offset:1; distance:2; sid:9;)",
                  "content mixes offset/depth with distance/within"},
        Rejection{"alert tcp any any -> any any (content:\"|4g|\"; sid:9;)", "bad hex digit 'g'"},
        Rejection{"alert tcp any any -> any any (content:\"a\\n\"; sid:9;)",
                  "unsupported escape '\\n'"},
        Rejection{"alert tcp any any -> any any (content:\"abc; sid:9;)", "unterminated '\"'"},
        Rejection{"alert tcp any any -> any any (content:\"a\"; sid:9;",
                  "missing ')' at the end of the rule"},
        Rejection{"alert tcp any any -> any any (content:!\"a\"; fast_pattern; sid:9;)",
                  "fast_pattern on a negated content"},
        Rejection{"alert tcp any any -> any any (msg:\"hdr\"; sid:9;)",
                  "rule needs a content or a pcre that is not negated"},
        Rejection{"alert tcp any any -> any any (content:!\"a\"; sid:9;)",
                  "rule needs a content or a pcre that is not negated"},
        Rejection{"alert tcp any any -> any any (flow:not_established; content:\"a\"; sid:9;)",
                  "unsupported flow option 'not_established'"},
        Rejection{"alert tcp any any -> any any (flow:to_server,to_client; content:\"a\"; sid:9;)",
                  "flow has both directions"},
        Rejection{"alert tcp any any any any (content:\"a\"; sid:9;)",
                  "rule header needs 7 fields"},
        Rejection{"alert tcp any any => any any (content:\"a\"; sid:9;)", "bad direction '=>'"},
        Rejection{"alert tcp 10.0.0.0/33 any -> any any (content:\"a\"; sid:9;)",
                  "bad CIDR prefix"},
        Rejection{"alert tcp any 70000 -> any any (content:\"a\"; sid:9;)", "bad port '70000'"},
        Rejection{"alert tcp any 90:80 -> any any (content:\"a\"; sid:9;)", "empty port range"},
        Rejection{"alert tcp any any -> any any (content:\"a\"; http_uri; sid:9;)",
                  "unsupported rule option 'http_uri' in sid 9"},
        Rejection{"alert tcp any any -> any any (content:\"a\"; sid:x;)", "bad sid 'x'"},
        Rejection{"alert tcp any any -> any any (pcre:\"a/\"; sid:9;)",
                  "pcre must look like \"/regex/flags\""},
        Rejection{"alert tcp any any -> any any (content:\"a\"; fast_pattern:1,2; sid:9;)",
                  "unsupported fast_pattern argument"}));

TEST(IdsRuleParser, ContentDecoding) {
  EXPECT_EQ(*decode_ids_content("a|00 41|b"), std::string("a\0Ab", 4));
  EXPECT_EQ(*decode_ids_content("|0d0a|"), "\r\n");
  EXPECT_EQ(*decode_ids_content("x\\;y\\\"z\\\\\\:"), "x;y\"z\\:");
  EXPECT_FALSE(decode_ids_content("").ok());
  EXPECT_FALSE(decode_ids_content("|0|").ok());
  EXPECT_FALSE(decode_ids_content("|41").ok());
  EXPECT_FALSE(decode_ids_content("a\\").ok());
}

TEST(IdsRuleParser, AddressAndPortSets) {
  const auto rules = parse_ok(
      "alert tcp [10.0.0.0/8,!10.9.0.0/16] any -> !192.0.2.1 [80,8000:8080,!8001] "
      "(content:\"a\"; sid:1;)\n"
      "alert tcp 2001:db8::/32 :1023 -> any 1024: (content:\"a\"; sid:2;)\n");
  ASSERT_EQ(rules.size(), 2u);
  const Rule& a = rules[0];
  EXPECT_TRUE(a.src.matches(ipv4("10.1.2.3", 1)));
  EXPECT_FALSE(a.src.matches(ipv4("10.9.2.3", 1)));
  EXPECT_FALSE(a.src.matches(ipv4("11.0.0.1", 1)));
  EXPECT_FALSE(a.dst.matches(ipv4("192.0.2.1", 1)));
  EXPECT_TRUE(a.dst.matches(ipv4("192.0.2.2", 1)));
  EXPECT_TRUE(a.dst_ports.matches(80));
  EXPECT_TRUE(a.dst_ports.matches(8000));
  EXPECT_TRUE(a.dst_ports.matches(8080));
  EXPECT_FALSE(a.dst_ports.matches(8001));
  EXPECT_FALSE(a.dst_ports.matches(81));
  const Rule& b = rules[1];
  Endpoint v6;
  v6.family = AF_INET6;
  inet_pton(AF_INET6, "2001:db8::5", v6.addr);
  EXPECT_TRUE(b.src.matches(v6));
  EXPECT_FALSE(b.src.matches(ipv4("10.0.0.1", 1)));
  EXPECT_TRUE(b.src_ports.matches(1023));
  EXPECT_FALSE(b.src_ports.matches(1024));
  EXPECT_TRUE(b.dst_ports.matches(65535));
  EXPECT_FALSE(b.dst_ports.matches(1023));
}

TEST(IdsEngineBuild, PatternErrorsNameLineAndSid) {
  ids_test::TempDir dir;
  EXPECT_NE(ids_test::build_error(dir, "\nalert tcp any any -> any any (pcre:\"/a(b/\"; sid:42;)")
                .find("ids.rules:2: bad pcre 'a(b': missing closing parenthesis"),
            std::string::npos);
  // A pcre that matches the empty string cannot be a prefilter.
  const std::string empty =
      ids_test::build_error(dir, "alert tcp any any -> any any (pcre:\"/a*/\"; sid:43;)");
  EXPECT_NE(empty.find("ids.rules:1: hyperscan cannot compile the prefilter of sid 43"),
            std::string::npos)
      << empty;
  EXPECT_NE(ids_test::build_error(dir, "alert tcp any any -> any any (content:\"a\"; sid:1;)",
                                  {{"window_size", "1"}})
                .find("ids: unknown option 'window_size'"),
            std::string::npos);
  EXPECT_NE(ids_test::build_error(dir, "alert tcp any any -> any any (content:\"a\"; sid:1;)",
                                  {{"window_bytes", "12"}})
                .find("window_bytes = '12' must be a number in 256.."),
            std::string::npos);
}

TEST(IdsEngineBuild, DirectoryOfRuleFilesAndMissingFile) {
  ids_test::TempDir dir;
  dir.write("a.rules", "alert tcp any any -> any any (content:\"a\"; sid:1;)\n");
  dir.write("b.rules", "alert tcp any any -> any any (content:\"b\"; sid:1;)\n");
  dir.write("notes.txt", "not rules");
  auto r = load_ids_rules(dir.path().string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("b.rules:1: duplicate sid 1 (first defined at "),
            std::string::npos)
      << r.error().message;
  EXPECT_FALSE(load_ids_rules((dir.path() / "missing.rules").string()).ok());
}

}  // namespace
}  // namespace tosec::svm::ids
