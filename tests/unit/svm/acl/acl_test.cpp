// The acl engine: grammar, errors with file:line, first match, IPv4/IPv6, port ranges, default
// policy, and the shipped example.
#include "tosec/svm/engines/acl.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tosec::svm {
namespace {

namespace fs = std::filesystem;

class RulesFile {
 public:
  explicit RulesFile(const std::string& text) {
    std::string tmpl = fs::temp_directory_path().string() + "/tosec-acl-XXXXXX";
    const int fd = mkstemp(tmpl.data());
    path_ = tmpl;
    ::close(fd);
    std::ofstream(path_) << text;
  }
  ~RulesFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Endpoint ep(const char* addr, std::uint16_t port) {
  Endpoint e;
  if (inet_pton(AF_INET, addr, e.addr) == 1) {
    e.family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, addr, e.addr), 1) << addr;
    e.family = AF_INET6;
  }
  e.port = port;
  return e;
}

StreamInfo stream(const char* local, std::uint16_t lport, const char* remote, std::uint16_t rport,
                  std::uint8_t proto = IPPROTO_TCP, bool guest_is_client = true,
                  const char* guest = "g1") {
  StreamInfo s;
  s.stream_id = 1;
  s.guest = guest;
  s.protocol = proto;
  s.local = ep(local, lport);
  s.remote = ep(remote, rport);
  s.guest_is_client = guest_is_client;
  return s;
}

struct Loaded {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<EngineThread> thread;
};

Loaded load(const std::string& text, std::map<std::string, std::string> options = {}) {
  RulesFile f(text);
  auto e = make_acl_engine(EngineConfig{"acl", f.path(), std::move(options)});
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  if (!e.ok()) return {};
  auto t = (*e)->make_thread();
  EXPECT_TRUE(t.ok());
  return {std::move(*e), std::move(*t)};
}

std::string load_error(const std::string& text, std::string* path_out = nullptr) {
  RulesFile f(text);
  if (path_out) *path_out = f.path();
  auto e = make_acl_engine(EngineConfig{"acl", f.path(), {}});
  EXPECT_FALSE(e.ok()) << "accepted: " << text;
  return e.ok() ? "" : e.error().message;
}

// The verdict of a stream's first payload.
Verdict first_verdict(EngineThread& t, const StreamInfo& s) {
  auto insp = t.open_stream(s);
  static const std::byte data[4] = {};
  Payload p;
  p.bytes = data;
  return insp->inspect(p);
}

TEST(Acl, DenyRuleBlocksFirstPayloadWithRuleIdAndMsg) {
  auto l = load("# lab\ndeny tcp remote 10.1.0.0/16 port 22 direction out msg \"no ssh\"\n");
  ASSERT_TRUE(l.thread);
  const Verdict v = first_verdict(*l.thread, stream("192.168.0.5", 40000, "10.1.2.3", 22));
  ASSERT_EQ(v.action, Action::kBlock);
  ASSERT_EQ(v.findings.size(), 1u);
  EXPECT_EQ(v.findings[0].rule_id, "acl:2");
  EXPECT_EQ(v.findings[0].message, "no ssh");
  EXPECT_EQ(v.findings[0].category, "acl");
  // Other port, other network, other direction: not this rule; default allow.
  EXPECT_EQ(first_verdict(*l.thread, stream("192.168.0.5", 40000, "10.1.2.3", 23)).action,
            Action::kPass);
  EXPECT_EQ(first_verdict(*l.thread, stream("192.168.0.5", 40000, "10.2.2.3", 22)).action,
            Action::kPass);
  EXPECT_EQ(first_verdict(*l.thread, stream("192.168.0.5", 40000, "10.1.2.3", 22, IPPROTO_TCP,
                                            /*guest_is_client=*/false))
                .action,
            Action::kPass);
  EXPECT_EQ(
      first_verdict(*l.thread, stream("192.168.0.5", 40000, "10.1.2.3", 22, IPPROTO_UDP)).action,
      Action::kPass);
}

TEST(Acl, MessageDefaultsToRuleTextWithoutComment) {
  auto l = load("deny  udp   rport 53   # dns is not allowed\n");
  ASSERT_TRUE(l.thread);
  const Verdict v = first_verdict(*l.thread, stream("10.0.0.1", 5000, "8.8.8.8", 53, IPPROTO_UDP));
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).message, "deny  udp   rport 53");
}

TEST(Acl, FirstMatchWins) {
  auto l = load(
      "allow tcp remote 10.0.0.7\n"
      "deny tcp remote 10.0.0.0/24\n"
      "allow tcp remote 10.0.0.9\n");
  ASSERT_TRUE(l.thread);
  EXPECT_EQ(first_verdict(*l.thread, stream("1.1.1.1", 1, "10.0.0.7", 80)).action, Action::kPass);
  const Verdict v = first_verdict(*l.thread, stream("1.1.1.1", 1, "10.0.0.9", 80));
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, "acl:2");
}

TEST(Acl, Ipv6CidrsAndMappedIpv4) {
  auto l = load(
      "deny any remote 2001:db8::/32 msg \"doc prefix\"\n"
      "deny tcp local fe80::/10\n"
      "deny tcp remote 203.0.113.0/24\n");
  ASSERT_TRUE(l.thread);
  EXPECT_EQ(first_verdict(*l.thread, stream("::1", 1, "2001:db8:1::5", 443)).findings.at(0).rule_id,
            "acl:1");
  EXPECT_EQ(first_verdict(*l.thread, stream("::1", 1, "2001:db9::5", 443)).action, Action::kPass);
  EXPECT_EQ(
      first_verdict(*l.thread, stream("fe80::1", 1, "2001:db9::5", 443)).findings.at(0).rule_id,
      "acl:2");
  // An IPv4 rule applies to an IPv4-mapped IPv6 peer, and never to a plain IPv6 one.
  EXPECT_EQ(
      first_verdict(*l.thread, stream("::1", 1, "::ffff:203.0.113.9", 80)).findings.at(0).rule_id,
      "acl:3");
  EXPECT_EQ(first_verdict(*l.thread, stream("::1", 1, "::cb00:7109", 80)).action, Action::kPass);
  // An IPv6 rule never applies to an IPv4 peer.
  EXPECT_EQ(first_verdict(*l.thread, stream("10.0.0.1", 1, "32.1.13.184", 80)).action,
            Action::kPass);
}

TEST(Acl, PortRangesAreInclusive) {
  auto l = load("deny any local 192.168.0.0/24 rport 1000:2000\ndeny tcp lport 7\n");
  ASSERT_TRUE(l.thread);
  for (std::uint16_t p : {std::uint16_t{999}, std::uint16_t{2001}}) {
    EXPECT_EQ(first_verdict(*l.thread, stream("192.168.0.4", 5, "1.2.3.4", p)).action,
              Action::kPass)
        << p;
  }
  for (std::uint16_t p : {std::uint16_t{1000}, std::uint16_t{1500}, std::uint16_t{2000}}) {
    EXPECT_EQ(first_verdict(*l.thread, stream("192.168.0.4", 5, "1.2.3.4", p)).action,
              Action::kBlock)
        << p;
  }
  EXPECT_EQ(first_verdict(*l.thread, stream("192.168.1.4", 5, "1.2.3.4", 1500)).action,
            Action::kPass);
  EXPECT_EQ(first_verdict(*l.thread, stream("192.168.1.4", 7, "1.2.3.4", 1)).action,
            Action::kBlock);
}

TEST(Acl, GuestSelector) {
  auto l = load("deny tcp guest web1\n");
  ASSERT_TRUE(l.thread);
  EXPECT_EQ(first_verdict(*l.thread, stream("1.1.1.1", 1, "2.2.2.2", 2, IPPROTO_TCP, true, "web1"))
                .action,
            Action::kBlock);
  EXPECT_EQ(first_verdict(*l.thread, stream("1.1.1.1", 1, "2.2.2.2", 2, IPPROTO_TCP, true, "web2"))
                .action,
            Action::kPass);
}

TEST(Acl, DefaultPolicy) {
  const auto s = stream("1.1.1.1", 1, "2.2.2.2", 2);
  {
    auto l = load("allow tcp rport 80\n");  // built-in default: allow
    EXPECT_EQ(first_verdict(*l.thread, s).action, Action::kPass);
  }
  {
    auto l = load("allow tcp rport 80\n", {{"default", "deny"}});
    const Verdict v = first_verdict(*l.thread, s);
    ASSERT_EQ(v.action, Action::kBlock);
    EXPECT_EQ(v.findings.at(0).rule_id, "acl:default");
    EXPECT_EQ(v.findings.at(0).message, "default deny");
    EXPECT_EQ(first_verdict(*l.thread, stream("1.1.1.1", 1, "2.2.2.2", 80)).action, Action::kPass);
  }
  {
    // The file's default line wins over the option.
    auto l = load("default allow\n", {{"default", "deny"}});
    EXPECT_EQ(first_verdict(*l.thread, s).action, Action::kPass);
    auto d = load("default deny  # closed by default\n");
    EXPECT_EQ(first_verdict(*d.thread, s).action, Action::kBlock);
  }
}

TEST(Acl, AlertRulesAndDetectMode) {
  auto l = load("alert tcp rport 25 msg \"smtp\"\ndeny tcp rport 23\n", {{"mode", "detect"}});
  ASSERT_TRUE(l.thread);
  auto insp = l.thread->open_stream(stream("1.1.1.1", 1, "2.2.2.2", 25));
  static const std::byte data[4] = {};
  Payload p;
  p.bytes = data;
  const Verdict first = insp->inspect(p);
  ASSERT_EQ(first.action, Action::kAlert);
  EXPECT_EQ(first.findings.at(0).message, "smtp");
  EXPECT_EQ(insp->inspect(p).action, Action::kPass) << "an alert is reported once";
  EXPECT_EQ(first_verdict(*l.thread, stream("1.1.1.1", 1, "2.2.2.2", 23)).action, Action::kAlert);
}

TEST(Acl, AllowedStreamsReturnEmptyVerdicts) {
  auto l = load("deny tcp rport 22\n");
  auto insp = l.thread->open_stream(stream("1.1.1.1", 1, "2.2.2.2", 80));
  static const std::byte data[4] = {};
  Payload p;
  p.bytes = data;
  for (int i = 0; i < 3; ++i) {
    const Verdict v = insp->inspect(p);
    EXPECT_EQ(v.action, Action::kPass);
    EXPECT_TRUE(v.findings.empty());
  }
  EXPECT_EQ(insp->finish().action, Action::kPass);
}

TEST(Acl, GrammarErrorsNameFileLineAndProblem) {
  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"allow tcp\nblock tcp\n", ":2: unknown action 'block'"},
      {"deny\n", ":1: missing protocol"},
      {"deny icmp\n", ":1: bad protocol 'icmp'"},
      {"deny tcp remote 10.0.0.0/33\n", ":1: bad prefix length in '10.0.0.0/33'"},
      {"deny tcp remote 10.1.2.3/16\n", ":1: address '10.1.2.3/16' has host bits set"},
      {"deny tcp remote 300.1.1.1\n", ":1: bad address '300.1.1.1'"},
      {"deny tcp remote 2001:db8::/129\n", ":1: bad prefix length"},
      {"deny tcp rport 70000\n", ":1: bad port '70000'"},
      {"deny tcp rport 20:10\n", ":1: bad port range '20:10'"},
      {"deny tcp port 22\n", ":1: 'port' must follow a local or remote address"},
      {"deny tcp rport 1 rport 2\n", ":1: 'rport' given twice"},
      {"deny tcp remote 1.2.3.4 port 5 rport 6\n", ":1: 'rport' given twice"},
      {"deny tcp direction sideways\n", ":1: bad direction 'sideways'"},
      {"deny tcp msg unquoted\n", ":1: 'msg' needs a \"quoted string\""},
      {"deny tcp msg \"open\n", ":1: unterminated quoted string"},
      {"deny tcp colour blue\n", ":1: unknown keyword 'colour'"},
      {"deny tcp guest\n", ":1: 'guest' needs a guest name"},
      {"default allow\n\ndefault deny\n", ":3: second 'default' line (first at line 1)"},
      {"default maybe\n", ":1: expected 'default allow' or 'default deny'"},
  };
  for (const auto& c : cases) {
    std::string path;
    const std::string msg = load_error(c.text, &path);
    EXPECT_EQ(msg.rfind(path + c.expect, 0), 0u) << "text: " << c.text << "\ngot: " << msg;
  }
}

TEST(Acl, CommentsBlankLinesAndQuotedHash) {
  auto l = load("\n   # only a comment\n\tdeny tcp rport 9 msg \"a # in a msg\" # trailing\n\n");
  ASSERT_TRUE(l.thread);
  const Verdict v = first_verdict(*l.thread, stream("1.1.1.1", 1, "2.2.2.2", 9));
  ASSERT_EQ(v.action, Action::kBlock);
  EXPECT_EQ(v.findings.at(0).rule_id, "acl:3");
  EXPECT_EQ(v.findings.at(0).message, "a # in a msg");
}

TEST(Acl, BadOptionsAndMissingFile) {
  RulesFile f("default allow\n");
  EXPECT_FALSE(make_acl_engine(EngineConfig{"acl", f.path(), {{"default", "drop"}}}).ok());
  EXPECT_FALSE(make_acl_engine(EngineConfig{"acl", f.path(), {{"mode", "log"}}}).ok());
  EXPECT_FALSE(make_acl_engine(EngineConfig{"acl", f.path(), {{"speed", "fast"}}}).ok());
  auto missing = make_acl_engine(EngineConfig{"acl", "/nonexistent/acl.rules", {}});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/acl.rules"), std::string::npos);
}

TEST(Acl, ShippedExampleLoadsAndDecides) {
  auto e = make_acl_engine(
      EngineConfig{"acl", std::string(TOSEC_SOURCE_DIR) + "/examples/rules/acl.rules", {}});
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ((*e)->kind(), "acl");
  EXPECT_EQ((*e)->summary().rfind("7 rules, default allow", 0), 0u) << (*e)->summary();
  auto t = (*e)->make_thread();
  ASSERT_TRUE(t.ok());
  const Verdict ssh = first_verdict(**t, stream("192.168.0.5", 40000, "10.1.9.9", 22));
  ASSERT_EQ(ssh.action, Action::kBlock);
  EXPECT_EQ(ssh.findings.at(0).message, "ssh to the lab network");
  EXPECT_EQ(
      first_verdict(**t, stream("192.168.0.5", 443, "8.8.8.8", 5555, IPPROTO_TCP, false, "web1"))
          .action,
      Action::kPass);
  EXPECT_EQ(
      first_verdict(**t, stream("192.168.0.5", 22, "8.8.8.8", 5555, IPPROTO_TCP, false, "web1"))
          .action,
      Action::kBlock);
  EXPECT_EQ(first_verdict(**t, stream("::1", 5, "2001:db8::1", 80)).action, Action::kAlert);
}

}  // namespace
}  // namespace tosec::svm
