// PolicyMatcher: chain selection for new streams from the CLI's topology.
#include "tosec/tovm/policy_matcher.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace tosec::tovm {
namespace {

svm::Endpoint v4(const char* ip, std::uint16_t port) {
  svm::Endpoint e;
  e.family = AF_INET;
  ::inet_pton(AF_INET, ip, e.addr);
  e.port = port;
  return e;
}

svm::StreamInfo stream(bool guest_is_client, svm::Endpoint local, svm::Endpoint remote,
                       std::uint8_t proto = 6) {
  svm::StreamInfo s;
  s.guest = "web";
  s.protocol = proto;
  s.local = local;
  s.remote = remote;
  s.guest_is_client = guest_is_client;
  return s;
}

tosec::v1::Topology topology() {
  tosec::v1::Topology t;
  auto* c1 = t.add_chains();
  c1->set_name("web-in");
  c1->set_id(1);
  auto* c2 = t.add_chains();
  c2->set_name("egress");
  c2->set_id(2);
  auto* p1 = t.add_policies();  // incoming connections to local port 80
  p1->set_priority(10);
  p1->set_guest("web");
  p1->set_chain("web-in");
  p1->set_direction(tosec::v1::DIRECTION_INCOMING);
  p1->set_protocol(tosec::v1::PROTOCOL_TCP);
  p1->mutable_local_ports()->set_first(80);
  p1->mutable_local_ports()->set_last(80);
  auto* p2 = t.add_policies();  // outgoing to 10.0.0.0/8
  p2->set_priority(5);
  p2->set_guest("web");
  p2->set_chain("egress");
  p2->set_direction(tosec::v1::DIRECTION_OUTGOING);
  const unsigned char net[4] = {10, 0, 0, 0};
  p2->mutable_remote()->set_address(net, 4);
  p2->mutable_remote()->set_prefix_len(8);
  auto* p3 = t.add_policies();  // another guest's policy is ignored
  p3->set_priority(100);
  p3->set_guest("db");
  p3->set_chain("egress");
  return t;
}

TEST(PolicyMatcher, DirectionPortsPrefixesAndGuest) {
  auto m = PolicyMatcher::create(topology(), "web");
  ASSERT_TRUE(m.ok()) << m.error().message;
  auto in80 = m->match(stream(false, v4("10.1.0.1", 80), v4("192.168.1.9", 40000)));
  ASSERT_TRUE(in80);
  EXPECT_EQ(in80->chain_name, "web-in");
  EXPECT_FALSE(m->match(stream(false, v4("10.1.0.1", 81), v4("192.168.1.9", 40000))));
  EXPECT_FALSE(m->match(stream(false, v4("10.1.0.1", 80), v4("192.168.1.9", 40000), 17)));
  auto out = m->match(stream(true, v4("10.1.0.1", 5000), v4("10.200.3.4", 443)));
  ASSERT_TRUE(out);
  EXPECT_EQ(out->chain_id, 2U);
  EXPECT_FALSE(m->match(stream(true, v4("10.1.0.1", 5000), v4("11.0.0.1", 443))));
}

TEST(PolicyMatcher, PriorityWinsAndBadPoliciesAreNamed) {
  auto t = topology();
  auto* p = t.add_policies();
  p->set_name("catch-all");
  p->set_priority(50);
  p->set_chain("egress");
  auto m = PolicyMatcher::create(t, "web");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->match(stream(false, v4("10.1.0.1", 80), v4("1.2.3.4", 1)))->chain_name, "egress");
  t.mutable_policies(3)->set_chain("missing");
  auto bad = PolicyMatcher::create(t, "web");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("catch-all"), std::string::npos);
  EXPECT_NE(bad.error().message.find("no chain \"missing\""), std::string::npos);
}

}  // namespace
}  // namespace tosec::tovm
