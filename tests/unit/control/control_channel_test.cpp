// ControlChannel: every ControlMessage kind round-trips through a control ring, and bad frames
// (unknown type, unparsable payload) cost one error without losing the channel.
#include "tosec/rpc/control_channel.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "control_test_util.h"

namespace tosec::rpc {
namespace {

using test::TestArea;
namespace v1 = tosec::v1;

std::string ip4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return std::string{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                     static_cast<char>(d)};
}

v1::ControlMessage topology_message() {
  v1::ControlMessage m;
  m.set_seq(1);
  m.set_sender("host");
  m.set_want_ack(true);
  auto* t = m.mutable_topology();
  t->set_generation(7);
  auto* g = t->add_guests();
  g->set_name("web");
  g->set_id(1);
  g->set_tovm("tovm0");
  g->add_addresses()->set_address(ip4(10, 0, 0, 2));
  (*g->mutable_labels())["tenant"] = "acme";
  auto* tovm = t->add_tovms();
  tovm->set_name("tovm0");
  tovm->set_stack(v1::STACK_BACKEND_KERNEL);
  auto* ids = t->add_svms();
  ids->set_name("ids0");
  ids->set_id(3);
  ids->set_engine(v1::ENGINE_TYPE_IDS);
  ids->set_read_only(true);
  (*ids->mutable_config())["rules"] = "/etc/tosec/rules/ids.rules";
  auto* chain = t->add_chains();
  chain->set_name("inspect");
  chain->set_id(2);
  chain->add_steps()->set_svm("acl0");
  auto* group = chain->add_steps()->mutable_parallel();
  group->add_svms("ids0");
  group->add_svms("av0");
  chain->set_fail_policy(v1::FAIL_POLICY_FAIL_CLOSED);
  chain->set_deadline_us(5000);
  auto* pol = t->add_policies();
  pol->set_name("web-out");
  pol->set_guest("web");
  pol->set_direction(v1::DIRECTION_OUTGOING);
  pol->mutable_remote()->set_address(ip4(192, 168, 0, 0));
  pol->mutable_remote()->set_prefix_len(16);
  pol->mutable_remote_ports()->set_first(80);
  pol->mutable_remote_ports()->set_last(443);
  pol->set_protocol(v1::PROTOCOL_TCP);
  pol->set_chain("inspect");
  return m;
}

v1::ControlMessage stream_table_message() {
  v1::ControlMessage m;
  m.set_seq(2);
  auto* u = m.mutable_stream_table_update();
  u->set_generation(8);
  auto* e = u->add_add();
  e->set_stream_id(0x1234'5678'9ABCULL);
  e->set_guest_id(1);
  e->set_direction(v1::DIRECTION_INCOMING);
  e->set_chain_id(2);
  e->mutable_next_hop()->set_kind(v1::HOP_KIND_SVM);
  e->mutable_next_hop()->set_step(1);
  e->mutable_next_hop()->add_svm_ids(3);
  e->mutable_flow()->set_src_ip(ip4(10, 0, 0, 2));
  e->mutable_flow()->set_src_port(40000);
  e->mutable_flow()->set_dest_ip(ip4(1, 2, 3, 4));
  e->mutable_flow()->set_dest_port(80);
  e->mutable_flow()->set_protocol(v1::PROTOCOL_TCP);
  u->add_remove(99);
  return m;
}

v1::ControlMessage chain_message() {
  v1::ControlMessage m;
  m.set_seq(3);
  auto* c = m.mutable_chain_update();
  c->set_generation(9);
  auto* chain = c->add_upsert();
  chain->set_name("open");
  chain->set_id(5);
  chain->add_steps()->set_svm("waf0");
  chain->set_fail_policy(v1::FAIL_POLICY_FAIL_OPEN);
  c->add_remove_ids(2);
  return m;
}

v1::ControlMessage stats_message() {
  v1::ControlMessage m;
  m.set_seq(4);
  auto* s = m.mutable_stats();
  s->set_timestamp_unix_ns(1'700'000'000'000'000'000LL);
  s->set_source("tovm0");
  auto* g = s->add_guests();
  g->set_guest("web");
  g->set_bytes_out(1ULL << 40);
  auto* r = s->add_rings();
  r->set_region("guest.web");
  r->set_ring("req");
  r->set_enqueued(12345);
  auto* svm = s->add_svms();
  svm->set_svm("ids0");
  svm->set_verdict_block(3);
  svm->set_latency_p99_ns(42000);
  return m;
}

v1::ControlMessage alert_message() {
  v1::ControlMessage m;
  m.set_seq(5);
  m.set_sender("svm.ids0");
  auto* a = m.mutable_alert();
  a->set_timestamp_unix_ns(1'700'000'000'123'456'789LL);
  a->set_guest("web");
  a->set_stream_id(77);
  a->mutable_flow()->set_src_ip(ip4(10, 0, 0, 2));
  a->mutable_flow()->set_dest_port(80);
  a->set_direction(v1::DIRECTION_OUTGOING);
  a->set_svm("ids0");
  a->set_engine(v1::ENGINE_TYPE_IDS);
  a->set_rule_id(2'100'498);
  a->set_rule_rev(7);
  a->set_message("GPL ATTACK_RESPONSE id check returned root");
  a->set_severity(2);
  a->set_action(v1::ALERT_ACTION_BLOCKED);
  a->set_payload_excerpt(std::string("uid=0(root)\0gid", 15));
  return m;
}

v1::ControlMessage svm_command_message() {
  v1::ControlMessage m;
  m.set_seq(6);
  auto* c = m.mutable_svm_command();
  c->set_op(v1::SVM_OP_STOP);
  c->set_svm_id(3);
  c->set_drain(true);
  c->set_timeout_ms(2000);
  return m;
}

v1::ControlMessage ack_message() {
  v1::ControlMessage m;
  m.set_seq(7);
  m.mutable_ack()->set_seq(1);
  m.mutable_ack()->set_code(EINVAL);
  m.mutable_ack()->set_message("chain 'inspect': unknown svm 'av0'");
  return m;
}

std::vector<v1::ControlMessage> every_kind() {
  return {topology_message(), stream_table_message(), chain_message(), stats_message(),
          alert_message(),    svm_command_message(),  ack_message()};
}

struct Pair {
  explicit Pair(std::uint32_t capacity) : area(capacity) {
    EXPECT_TRUE(ControlRing::format(area.span(), capacity).ok());
  }
  ControlChannel open(const char* name) {
    auto r = ControlRing::attach(area.span(), name);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return ControlChannel(std::move(r).value());
  }
  TestArea area;
};

TEST(ControlChannel, EveryMessageKindRoundTrips) {
  Pair p(4096);
  ControlChannel tx = p.open("ctl.h2t");
  ControlChannel rx = p.open("ctl.h2t");
  const auto msgs = every_kind();
  // Each kind of the oneof is covered (a new kind must be added to every_kind()).
  ASSERT_EQ(msgs.size(), static_cast<std::size_t>(
                             v1::ControlMessage::GetDescriptor()->oneof_decl(0)->field_count()));
  for (int round = 0; round < 20; ++round) {  // enough rounds to wrap the ring several times
    for (const auto& m : msgs) {
      Status s = tx.send(m);
      ASSERT_TRUE(s.ok()) << s.message();
      v1::ControlMessage got;
      s = rx.receive(got);
      ASSERT_TRUE(s.ok()) << s.message();
      EXPECT_EQ(got.body_case(), m.body_case());
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got, m))
          << got.DebugString() << "\nvs\n"
          << m.DebugString();
    }
  }
  EXPECT_EQ(rx.receive().error().code, EAGAIN);
}

TEST(ControlChannel, UnparsablePayloadIsReportedAndSkipped) {
  Pair p(1024);
  ControlChannel tx = p.open("ctl");
  ControlChannel rx = p.open("ctl");
  // 0xFF... is a varint that never ends: not a valid message.
  const std::vector<std::byte> junk(10, std::byte{0xFF});
  ASSERT_TRUE(tx.ring().write(kControlMessageFrame, junk).ok());
  ASSERT_TRUE(tx.send(ack_message()).ok());

  auto bad = rx.receive();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EBADMSG);
  EXPECT_NE(bad.error().message.find("frame type 1 of 10 bytes"), std::string::npos)
      << bad.error().message;
  auto good = rx.receive();
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*good, ack_message()));
}

TEST(ControlChannel, UnknownFrameTypeIsReportedAndSkipped) {
  Pair p(1024);
  ControlChannel tx = p.open("ctl");
  ControlChannel rx = p.open("ctl");
  ASSERT_TRUE(tx.ring().write(42, std::vector<std::byte>(5)).ok());
  ASSERT_TRUE(tx.send(chain_message()).ok());
  auto bad = rx.receive();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EBADMSG);
  EXPECT_NE(bad.error().message.find("frame type 42 (5 bytes)"), std::string::npos)
      << bad.error().message;
  auto good = rx.receive();
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ(good->body_case(), v1::ControlMessage::kChainUpdate);
}

TEST(ControlChannel, OversizeMessageIsEmsgsize) {
  Pair p(256);
  ControlChannel tx = p.open("ctl");
  v1::ControlMessage m = alert_message();
  m.mutable_alert()->set_payload_excerpt(std::string(1000, 'x'));
  Status s = tx.send(m);
  EXPECT_EQ(s.code(), EMSGSIZE);
  EXPECT_NE(s.message().find("(alert)"), std::string::npos) << s.message();
  EXPECT_TRUE(tx.send(ack_message()).ok()) << "channel still usable";
}

TEST(ControlChannel, NewerPeerFieldsAreKeptAsUnknown) {
  // A newer sender adds field 100 to the envelope; this build must still parse the message.
  Pair p(1024);
  ControlChannel tx = p.open("ctl");
  ControlChannel rx = p.open("ctl");
  std::string wire = ack_message().SerializeAsString();
  wire += static_cast<char>(0xA0);  // field 100, wire type 0: tag varint 0x320 = A0 06
  wire += static_cast<char>(0x06);
  wire += static_cast<char>(0x2A);  // value 42
  ASSERT_TRUE(tx.ring().write(kControlMessageFrame, std::as_bytes(std::span(wire))).ok());
  auto got = rx.receive();
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->ack().seq(), 1U);
  EXPECT_EQ(got->GetReflection()->GetUnknownFields(*got).field_count(), 1);
}

}  // namespace
}  // namespace tosec::rpc
