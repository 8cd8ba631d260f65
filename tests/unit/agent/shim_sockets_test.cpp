// The agent's two shim-facing protocols, checked against the shim's own client code: the
// ivshmem join is read by rpc::IvshmemClient (what guest_lib/src/platform_connection.cpp uses),
// the sidecar reader gets what the shim sends (guest_lib/src/lane.cpp) and rejects the rest.
#include "tosec/agent/shim_sockets.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "tosec/rpc/ivshmem_client.h"

namespace tosec::agent {
namespace {

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/tosec-agent-test-XXXXXX";
    path_ = ::mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

rpc::UniqueFd eventfd_() { return rpc::UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)); }

TEST(ShimIvshmemJoin, TheShimsClientCompletesItsHandshake) {
  TempDir dir;
  const std::string path = dir.path() + "/iv.sock";
  auto listener = listen_unix(path, SOCK_STREAM);
  ASSERT_TRUE(listener) << listener.error().message;
  rpc::UniqueFd region(::memfd_create("agent-test", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(region.get(), 1 << 20), 0);
  std::vector<rpc::UniqueFd> toe;
  std::vector<int> toe_raw;
  for (int i = 0; i < 3; ++i) {
    toe.push_back(eventfd_());
    toe_raw.push_back(toe.back().get());
  }
  rpc::UniqueFd own = eventfd_();

  // The shim's default: one vector (extra vectors must be closed, not break the handshake).
  rpc::IvshmemClient client({1, 5000});
  rpc::Status connected;
  std::thread shim([&] { connected = client.connect(path); });
  pollfd p{listener->get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, -1), 1);  // the listener is non-blocking: wait for the shim
  rpc::UniqueFd conn(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.valid());
  EXPECT_GT(peer_pid(conn.get()), 0);
  ShimJoin j{7, 2, toe_raw, region.get(), own.get()};
  ASSERT_TRUE(send_ivshmem_join(conn.get(), j));
  shim.join();
  ASSERT_TRUE(connected) << connected.message();
  EXPECT_EQ(client.self_id(), 7);
  EXPECT_EQ(client.region().size(), std::size_t{1} << 20);
  ASSERT_TRUE(client.doorbells().has_peer(2));
  // The shim rings the TOE: our local eventfd for vector 0 fires.
  ASSERT_TRUE(client.doorbells().ring(2, 0));
  std::uint64_t v = 0;
  EXPECT_EQ(::read(toe_raw[0], &v, sizeof v), static_cast<ssize_t>(sizeof v));
  // The TOE rings the process (MSI-X eventfd): the shim's own vector 0 fires.
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(own.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
  auto rung = client.doorbells().wait(0, 0);
  ASSERT_TRUE(rung);
  EXPECT_TRUE(*rung);
}

class SidecarRead : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    shim_.reset(sv[0]);
    agent_.reset(sv[1]);
  }
  void send_with_fds(const void* data, std::size_t len, std::vector<int> fds) {
    iovec iov{const_cast<void*>(data), len};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
      msg.msg_control = ctl;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      auto* c = reinterpret_cast<cmsghdr*>(ctl);  // the first header: ctl is big enough
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(::sendmsg(shim_.get(), &msg, 0), static_cast<ssize_t>(len));
  }
  rpc::UniqueFd shim_, agent_;
};

TEST_F(SidecarRead, HelloThenFdThenEof) {
  using K = SidecarMessage::Kind;
  EXPECT_EQ(read_sidecar(agent_.get(), true).kind, K::kAgain);
  rpc::SidecarHello h{rpc::kSidecarMagic, rpc::kGuestChannelVersion, 42, 7, 0};
  send_with_fds(&h, sizeof h, {});
  auto m = read_sidecar(agent_.get(), true);
  ASSERT_EQ(m.kind, K::kHello) << m.error;
  EXPECT_EQ(m.hello.pid, 42U);
  rpc::UniqueFd e = eventfd_();
  rpc::SidecarFd f{rpc::kSidecarMagic, 0, 99};
  send_with_fds(&f, sizeof f, {e.get()});
  m = read_sidecar(agent_.get(), false);
  ASSERT_EQ(m.kind, K::kFd) << m.error;
  EXPECT_EQ(m.fd_msg.request_id, 99U);
  EXPECT_TRUE(m.fd.valid());
  shim_.reset();
  EXPECT_EQ(read_sidecar(agent_.get(), false).kind, K::kEof);
}

TEST_F(SidecarRead, MalformedMessagesAreRejectedAndTheirFdsClosed) {
  using K = SidecarMessage::Kind;
  rpc::SidecarHello bad{0xdead, rpc::kGuestChannelVersion, 1, 0, 0};
  send_with_fds(&bad, sizeof bad, {});
  auto m = read_sidecar(agent_.get(), true);
  EXPECT_EQ(m.kind, K::kBad);
  EXPECT_NE(m.error.find("magic"), std::string::npos);

  rpc::SidecarFd f{rpc::kSidecarMagic, 0, 1};
  send_with_fds(&f, sizeof f, {});  // no fd
  m = read_sidecar(agent_.get(), false);
  EXPECT_EQ(m.kind, K::kBad);
  rpc::UniqueFd a = eventfd_(), b = eventfd_();
  send_with_fds(&f, sizeof f, {a.get(), b.get()});  // two fds
  m = read_sidecar(agent_.get(), false);
  EXPECT_EQ(m.kind, K::kBad);
  EXPECT_FALSE(m.fd.valid());
  const char shorty[8] = {};
  send_with_fds(shorty, sizeof shorty, {});
  m = read_sidecar(agent_.get(), false);
  EXPECT_EQ(m.kind, K::kBad);
  EXPECT_NE(m.error.find("8 bytes"), std::string::npos);
}

}  // namespace
}  // namespace tosec::agent
