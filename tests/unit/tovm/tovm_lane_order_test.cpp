// Order across lanes: what one process queued before a new process (a forked child) joined is
// served before the newcomer's first request (GuestSession::drain_process_lanes).
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <memory>
#include <string>

#include "fake_guest.h"
#include "toe_harness.h"

namespace tosec::tovm::test {
namespace {

// A long request ring: a queue the TOE needs over a hundred bursts of 32 to work through, so a
// newcomer served between two bursts would see the option before the parent's last post.
rpc::GuestChannelConfig long_rings() {
  rpc::GuestChannelConfig c = small_config();
  c.ring_slots = 4096;
  return c;
}

// The parent posts 4,095 SO_KEEPALIVE=0 and a last SO_KEEPALIVE=1 (no replies), as a shim posts
// options and then forks; the child joins while all of it is queued and asks at once.
TEST(TovmLaneOrder, ANewLaneIsServedAfterWhatOtherLanesQueuedBeforeIt) {
  ToeHarness toe(long_rings());
  ASSERT_TRUE(toe.ok()) << toe.error();
  std::string err;
  auto parent = FakeGuest::join(toe.options().ivshmem, toe.options().sidecar, err);
  ASSERT_TRUE(parent) << err;
  rpc::UniqueFd a;
  const std::int64_t id = parent->socket(AF_INET, SOCK_STREAM, a);
  ASSERT_GE(id, 0);
  const auto sock = static_cast<std::uint32_t>(id);

  toe.pause();
  const std::uint32_t n = long_rings().ring_slots;
  for (std::uint32_t i = 0; i < n; ++i) {
    ASSERT_EQ(parent->setsockopt_inline(sock, SOL_SOCKET, SO_KEEPALIVE, i + 1 == n ? 1 : 0, false),
              0)
        << "post " << i;
  }
  // The TOE goes on only once the child's hello is queued: all 4,096 are still waiting then.
  auto child =
      FakeGuest::join(toe.options().ivshmem, toe.options().sidecar, err, [&] { toe.resume(); });
  ASSERT_TRUE(child) << err;
  EXPECT_NE(child->lane(), parent->lane());
  EXPECT_EQ(child->getsockopt_int(sock, SOL_SOCKET, SO_KEEPALIVE), 1)
      << "the child's request overtook the parent's last posted option";
  EXPECT_EQ(toe.stat("bad_descriptors"), 0);
  EXPECT_EQ(toe.stat("async_setsockopt_failures"), 0);
}

}  // namespace
}  // namespace tosec::tovm::test
