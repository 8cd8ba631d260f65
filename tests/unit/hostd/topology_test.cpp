// Live changes: what hostd accepts, what it rejects (and the field the message names), and the
// per-guest topology file a change produces.
#include "tosec/hostd/topology.h"

#include <gtest/gtest.h>

namespace {

namespace v1 = tosec::v1;
using tosec::cli::Config;

Config two_guests() {
  auto c = tosec::cli::parse_config(R"(
[[guest]]
name = "web"
[[guest]]
name = "db"
[[svm]]
name = "ids"
engine = "ids"
rules = "/nonexistent/ids.rules"
[[svm]]
name = "waf"
engine = "waf"
rules = "/nonexistent/waf.conf"
[[chain]]
name = "out"
steps = ["ids"]
[[policy]]
guest = "web"
direction = "out"
chain = "out"
)",
                                    "test.toml");
  EXPECT_TRUE(c) << c.error().message;
  return *c;
}

v1::Chain chain(const std::string& name, const std::vector<std::string>& svms) {
  v1::Chain c;
  c.set_name(name);
  for (const auto& s : svms) c.add_steps()->set_svm(s);
  return c;
}

TEST(HostdTopology, UnnamedConfigPoliciesArePolicyN) {
  EXPECT_EQ(two_guests().policies.at(0).name, "policy-1");
}

TEST(HostdTopology, SetChainAddsAndReplaces) {
  auto c = tosec::hostd::set_chain(two_guests(), chain("in", {"ids"}));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->chains.size(), 2U);
  auto r = tosec::hostd::set_chain(*c, chain("out", {"ids", "waf"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->chains.size(), 2U);
  EXPECT_EQ(r->chains[0].steps.size(), 2U);
}

TEST(HostdTopology, SetChainNamingAnUnknownSvmIsInvalid) {
  auto c = tosec::hostd::set_chain(two_guests(), chain("out", {"av"}));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, EINVAL);
  EXPECT_NE(c.error().message.find("no svm \"av\""), std::string::npos) << c.error().message;
}

TEST(HostdTopology, EmptyChainOrStepIsInvalid) {
  v1::Chain c;
  c.set_name("x");
  EXPECT_FALSE(tosec::hostd::set_chain(two_guests(), c));
  c.add_steps();
  auto r = tosec::hostd::set_chain(two_guests(), c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("step 0 is empty"), std::string::npos);
}

TEST(HostdTopology, AddPolicyGoesFirstAndValidatesFields) {
  v1::Policy p;
  p.set_name("web-in");
  p.set_guest("web");
  p.set_chain("out");
  p.set_direction(v1::DIRECTION_INCOMING);
  auto c = tosec::hostd::add_policy(two_guests(), p);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->policies.front().name, "web-in");
  EXPECT_EQ(c->policies.front().direction, "in");

  p.set_guest("nobody");
  auto bad = tosec::hostd::add_policy(two_guests(), p);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("guest: no guest \"nobody\""), std::string::npos);

  p.set_guest("web");
  p.set_chain("missing");
  bad = tosec::hostd::add_policy(two_guests(), p);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("chain: no chain \"missing\""), std::string::npos);

  p.set_chain("out");
  p.mutable_remote()->set_address("abc");
  bad = tosec::hostd::add_policy(two_guests(), p);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("remote.address"), std::string::npos);
}

TEST(HostdTopology, RemoveUnknownPolicyIsNotFound) {
  auto c = tosec::hostd::remove_policy(two_guests(), "nope");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ENOENT);
  auto ok = tosec::hostd::remove_policy(two_guests(), "policy-1");
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->policies.empty());
}

TEST(HostdTopology, ConfigRoundTripsThroughTopology) {
  const Config cfg = two_guests();
  const auto t = tosec::hostd::config_to_topology(cfg, 7);
  EXPECT_EQ(t.generation(), 7U);
  EXPECT_EQ(t.guests_size(), 2);
  auto back = tosec::hostd::apply_topology(cfg, t);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->policies.size(), 1U);
  EXPECT_EQ(back->policies[0].name, "policy-1");
  EXPECT_EQ(back->policies[0].direction, "out");
  EXPECT_EQ(back->chains[0].steps, cfg.chains[0].steps);
}

TEST(HostdTopology, ApplyTopologyCannotChangeGuests) {
  auto t = tosec::hostd::config_to_topology(two_guests(), 1);
  t.mutable_guests(1)->set_name("other");
  auto r = tosec::hostd::apply_topology(two_guests(), t);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EBUSY);
  EXPECT_NE(r.error().message.find("guests"), std::string::npos);
}

TEST(HostdTopology, GuestTopologyKeepsRunningNodesAndGeneration) {
  const Config cfg = two_guests();
  auto running = tosec::cli::plan_inspection(cfg, "web", "/nonexistent");
  ASSERT_TRUE(running);
  ASSERT_EQ(running->svms.size(), 1U);
  // A second chain with the same SVM, selected first: nodes and SVMs unchanged, generation set.
  auto next = tosec::hostd::set_chain(cfg, chain("also", {"ids"}));
  ASSERT_TRUE(next);
  v1::Policy p;
  p.set_name("first");
  p.set_guest("web");
  p.set_chain("also");
  auto with = tosec::hostd::add_policy(*next, p);
  ASSERT_TRUE(with);
  auto t = tosec::hostd::guest_topology(*with, "web", *running, "/nonexistent", 5);
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->generation(), 5U);
  ASSERT_EQ(t->svms_size(), 1);
  EXPECT_EQ(t->svms(0).id(), running->svms[0].node);
  EXPECT_EQ(t->policies(0).chain(), "also");
}

TEST(HostdTopology, ChainWithSvmThatDoesNotRunIsAPrecondition) {
  const Config cfg = two_guests();
  auto running = tosec::cli::plan_inspection(cfg, "web", "/nonexistent");
  ASSERT_TRUE(running);
  auto next = tosec::hostd::set_chain(cfg, chain("out", {"ids", "waf"}));
  ASSERT_TRUE(next);
  auto t = tosec::hostd::guest_topology(*next, "web", *running, "/nonexistent", 2);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, EBUSY);
  EXPECT_NE(t.error().message.find("svm \"waf\" does not run for guest \"web\""), std::string::npos)
      << t.error().message;
}

TEST(HostdTopology, GuestWithoutInspectionRegionCannotGetAChainLive) {
  const Config cfg = two_guests();
  auto running = tosec::cli::plan_inspection(cfg, "db", "/nonexistent");
  ASSERT_TRUE(running);
  ASSERT_TRUE(running->empty());
  v1::Policy p;
  p.set_name("db-out");
  p.set_guest("db");
  p.set_chain("out");
  auto next = tosec::hostd::add_policy(cfg, p);
  ASSERT_TRUE(next);
  auto t = tosec::hostd::guest_topology(*next, "db", *running, "/nonexistent", 2);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, EBUSY);
  EXPECT_NE(t.error().message.find("no inspection region"), std::string::npos);
}

TEST(HostdTopology, ParseChainSteps) {
  auto s = tosec::hostd::parse_chain_steps("ids,waf+av");
  ASSERT_TRUE(s);
  ASSERT_EQ(s->size(), 2U);
  EXPECT_EQ((*s)[1], (std::vector<std::string>{"waf", "av"}));
  EXPECT_FALSE(tosec::hostd::parse_chain_steps("ids,,waf"));
  EXPECT_FALSE(tosec::hostd::parse_chain_steps(""));
  EXPECT_FALSE(tosec::hostd::parse_chain_steps("ids+"));
}

}  // namespace
