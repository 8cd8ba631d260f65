#include "tosec/agent/agent_options.h"

#include <gtest/gtest.h>

#include <vector>

namespace tosec::agent {
namespace {

rpc::Result<AgentOptions> parse(std::vector<std::string> args) {
  std::vector<char*> argv{const_cast<char*>("tosec-guest-agent")};
  for (auto& a : args) argv.push_back(a.data());
  return parse_agent_options(static_cast<int>(argv.size()), argv.data());
}

TEST(AgentOptions, Defaults) {
  auto o = parse({});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->device.kind, DeviceSpec::Kind::kPci);
  EXPECT_EQ(o->device.pci_index, 0U);
  EXPECT_EQ(o->ivshmem_socket, "/run/tosec/ivshmem.sock");
  EXPECT_EQ(o->toe_socket, "/run/tosec/toe.sock");
  EXPECT_FALSE(o->toe_peer);
}

TEST(AgentOptions, DeviceSpecs) {
  auto o = parse({"--device", "pci:2", "--toe-peer", "3", "--vectors", "5"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->device.pci_index, 2U);
  EXPECT_EQ(*o->toe_peer, 3);
  EXPECT_EQ(o->vectors, 5U);
  auto s = parse({"--device", "socket:/tmp/g.sock"});
  ASSERT_TRUE(s);
  EXPECT_EQ(s->device.kind, DeviceSpec::Kind::kSocket);
  EXPECT_EQ(s->device.socket_path, "/tmp/g.sock");
}

TEST(AgentOptions, BadArgumentsNameThemselves) {
  auto a = parse({"--device", "usb"});
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("usb"), std::string::npos);
  auto b = parse({"--vectors", "1"});
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("--vectors"), std::string::npos);
  EXPECT_FALSE(parse({"--device", "pci:x"}));
  EXPECT_FALSE(parse({"--bogus", "1"}));
  EXPECT_FALSE(parse({"--toe-socket"}));
}

}  // namespace
}  // namespace tosec::agent
