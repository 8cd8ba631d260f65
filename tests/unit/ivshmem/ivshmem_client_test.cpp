// IvshmemClient against scripted fake servers: every way a server can get the handshake or a
// later message wrong must give a clear error, never a hang or a crash.
#include "tosec/rpc/ivshmem_client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include "ivshmem_test_support.h"
#include "tosec/rpc/ivshmem_protocol.h"

namespace tosec::rpc {
namespace {

using test::TempDir;
namespace iv = ivshmem;

// Accepts one client on a temp socket and plays `script` to it; the connection stays open
// until destruction.
class FakeServer {
 public:
  explicit FakeServer(std::function<void(int)> script) : path_(dir_.file("fake.sock")) {
    listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_.get(), 1), 0);
    thread_ = std::thread([this, script = std::move(script)] {
      conn_.reset(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn_.valid()) script(conn_.get());
    });
  }
  ~FakeServer() {
    ::shutdown(listen_.get(), SHUT_RDWR);  // unblocks accept() if nobody connected
    join();
  }
  const std::string& path() const { return path_; }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  TempDir dir_;
  std::string path_;
  UniqueFd listen_;
  UniqueFd conn_;
  std::thread thread_;
};

void send_ok(int sock, std::int64_t v, int fd = -1) {
  auto s = iv::send_msg(sock, v, fd, 1000);
  EXPECT_TRUE(s.ok()) << s.message();
}

void send_new_eventfd(int sock, std::int64_t v) {
  auto e = make_eventfd();
  ASSERT_TRUE(e.ok());
  send_ok(sock, v, e->get());
}

// Version, id, shared memory (64 KiB).
void send_prologue(int sock, std::int64_t id) {
  send_ok(sock, iv::kProtocolVersion);
  send_ok(sock, id);
  UniqueFd shm = test::make_memfd(64 << 10);
  send_ok(sock, iv::kShmMessage, shm.get());
}

Status connect_to(IvshmemClient& c, const FakeServer& srv) { return c.connect(srv.path()); }

IvshmemClientOptions opts(unsigned vectors, int timeout_ms = 10000) {
  return IvshmemClientOptions{vectors, timeout_ms};
}

void expect_error(const Status& s, int code, const std::string& needle) {
  ASSERT_FALSE(s.ok()) << "expected an error containing '" << needle << "'";
  EXPECT_EQ(s.code(), code) << s.message();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

TEST(IvshmemClient, HandshakeWithExistingPeers) {
  FakeServer srv([](int s) {
    send_prologue(s, 3);
    for (int v = 0; v < 2; ++v) send_new_eventfd(s, 0);  // peer 0
    for (int v = 0; v < 2; ++v) send_new_eventfd(s, 7);  // peer 7
    for (int v = 0; v < 2; ++v) send_new_eventfd(s, 3);  // own
  });
  IvshmemClient c(opts(2));
  auto s = connect_to(c, srv);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(c.connected());
  EXPECT_EQ(c.self_id(), 3);
  EXPECT_EQ(c.region().size(), 64U << 10);
  EXPECT_EQ(c.peers(), (std::vector<PeerId>{0, 7}));
  EXPECT_EQ(c.doorbells().self(), 3);
  EXPECT_GE(c.doorbells().own_fd(1), 0);
  EXPECT_EQ(c.doorbells().peer_vector_count(7), 2U);
  EXPECT_TRUE(c.doorbells().ring(7, 1).ok());
  // Ringing ourselves works too (ivshmem allows it).
  EXPECT_TRUE(c.doorbells().ring(3, 0).ok());
  auto rung = c.doorbells().wait(0, 1'000'000'000);
  ASSERT_TRUE(rung.ok());
  EXPECT_TRUE(*rung);
}

TEST(IvshmemClient, VersionMismatchNamesTheVersion) {
  FakeServer srv([](int s) { send_ok(s, 1); });
  IvshmemClient c(opts(1));
  expect_error(connect_to(c, srv), EPROTO, "protocol version 1");
  EXPECT_FALSE(c.connected());
}

TEST(IvshmemClient, PreVersioningServerIsRejected) {
  // Servers before QEMU 2.5 sent the id first; with id 5 that reads as "version 5".
  FakeServer srv([](int s) { send_ok(s, 5); });
  IvshmemClient c(opts(1));
  expect_error(connect_to(c, srv), EPROTO, "version 5");
}

TEST(IvshmemClient, VersionWithFdIsRejected) {
  FakeServer srv([](int s) { send_new_eventfd(s, 0); });
  IvshmemClient c(opts(1));
  expect_error(connect_to(c, srv), EPROTO, "version message carried an fd");
}

TEST(IvshmemClient, InvalidIdIsRejected) {
  for (std::int64_t bad : {std::int64_t{-1}, std::int64_t{-7}, std::int64_t{65536}}) {
    FakeServer srv([bad](int s) {
      send_ok(s, 0);
      send_ok(s, bad);
    });
    IvshmemClient c(opts(1));
    expect_error(connect_to(c, srv), EPROTO, "invalid id message (" + std::to_string(bad));
  }
}

TEST(IvshmemClient, SharedMemoryWithoutFdIsRejected) {
  FakeServer srv([](int s) {
    send_ok(s, 0);
    send_ok(s, 0);
    send_ok(s, -1);
  });
  IvshmemClient c(opts(1));
  expect_error(connect_to(c, srv), EPROTO, "shared memory message without an fd");
}

TEST(IvshmemClient, SecondSharedMemoryIsRejected) {
  FakeServer srv([](int s) {
    send_prologue(s, 0);
    UniqueFd shm = test::make_memfd(4096);
    send_ok(s, -1, shm.get());
  });
  IvshmemClient c(opts(1));
  expect_error(connect_to(c, srv), EPROTO, "second shared memory");
}

TEST(IvshmemClient, OutOfRangeMessageIsRejected) {
  FakeServer srv([](int s) {
    send_prologue(s, 0);
    send_ok(s, -2);
  });
  IvshmemClient c(opts(1));
  expect_error(connect_to(c, srv), EPROTO, "invalid message -2");
}

TEST(IvshmemClient, MessageWithTwoFdsIsRejected) {
  FakeServer srv([](int s) {
    send_prologue(s, 0);
    auto e = make_eventfd();
    int fds[2] = {e->get(), e->get()};
    std::int64_t v = 0;
    iovec iov{&v, sizeof v};
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof fds)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    std::memcpy(CMSG_DATA(c), fds, sizeof fds);
    EXPECT_EQ(::sendmsg(s, &msg, 0), 8);
  });
  IvshmemClient c(opts(1));
  expect_error(connect_to(c, srv), EPROTO, "carried 2 fds");
}

TEST(IvshmemClient, FewerOwnVectorsThanNeededIsAClearError) {
  FakeServer srv([](int s) {
    send_prologue(s, 0);
    send_new_eventfd(s, 0);  // one own vector, the client wants two
    send_new_eventfd(s, 1);  // then a new peer arrives
  });
  IvshmemClient c(opts(2));
  expect_error(connect_to(c, srv), EPROTO, "sent only 1 own vectors, this client needs 2");
}

TEST(IvshmemClient, FewerOwnVectorsThenSilenceTimesOutWithAHint) {
  FakeServer srv([](int s) {
    send_prologue(s, 0);
    send_new_eventfd(s, 0);
  });
  IvshmemClient c(opts(2, 200));
  expect_error(connect_to(c, srv), ETIMEDOUT, "server's -n smaller");
}

TEST(IvshmemClient, SilentServerTimesOut) {
  FakeServer srv([](int) {});
  IvshmemClient c(opts(1, 100));
  expect_error(connect_to(c, srv), ETIMEDOUT, "version");
}

TEST(IvshmemClient, ServerHangingUpMidHandshake) {
  FakeServer srv([](int s) {
    send_ok(s, 0);
    send_ok(s, 4);
    ::shutdown(s, SHUT_WR);  // EOF after the id
  });
  IvshmemClient c(opts(1));
  expect_error(connect_to(c, srv), ECONNRESET, "connection closed");
}

TEST(IvshmemClient, NoServerAtPath) {
  TempDir dir;
  IvshmemClient c(opts(1));
  expect_error(c.connect(dir.file("nobody.sock")), ENOENT, "nobody.sock");
}

TEST(IvshmemClient, ConnectTwiceIsRejected) {
  FakeServer srv([](int s) {
    send_prologue(s, 0);
    send_new_eventfd(s, 0);
  });
  IvshmemClient c(opts(1));
  ASSERT_TRUE(connect_to(c, srv).ok());
  expect_error(connect_to(c, srv), EISCONN, "already connected");
}

TEST(IvshmemClient, ExtraVectorsAreClosedAsTheSpecSays) {
  FakeServer srv([](int s) {
    send_prologue(s, 2);
    for (int v = 0; v < 3; ++v) send_new_eventfd(s, 0);  // peer 0 has 3 vectors
    for (int v = 0; v < 3; ++v) send_new_eventfd(s, 2);  // so do we
  });
  IvshmemClient c(opts(2));
  ASSERT_TRUE(connect_to(c, srv).ok());
  srv.join();
  ASSERT_TRUE(test::wait_until(
      [&] { return c.process_events().ok() && c.extra_vectors_closed() == 2; }, 10000));
  EXPECT_EQ(c.doorbells().peer_vector_count(0), 2U);
  EXPECT_EQ(c.doorbells().own_fd(2), -1);
}

TEST(IvshmemClient, JoinAndLeaveEventsWithCallbacks) {
  std::promise<void> go;
  auto go_f = go.get_future();
  FakeServer srv([&](int s) {
    send_prologue(s, 1);
    for (int v = 0; v < 2; ++v) send_new_eventfd(s, 1);
    go_f.wait();
    send_new_eventfd(s, 9);  // peer 9, vector 0
    send_new_eventfd(s, 9);  // vector 1: now complete
    send_ok(s, 9);           // and gone again
    send_ok(s, 42);          // departure of a peer never announced: ignored
  });
  IvshmemClient c(opts(2));
  ASSERT_TRUE(connect_to(c, srv).ok());
  std::vector<std::pair<char, PeerId>> events;
  c.on_peer_joined([&](PeerId id) {
    events.emplace_back('+', id);
    EXPECT_EQ(c.doorbells().peer_vector_count(id), 2U) << "joined fires once all vectors arrived";
  });
  c.on_peer_left([&](PeerId id) {
    events.emplace_back('-', id);
    EXPECT_FALSE(c.doorbells().has_peer(id)) << "left fires after the doorbells are gone";
  });
  auto idle = c.process_events();
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(*idle, 0U);
  go.set_value();
  auto id = c.wait_for_peer(std::nullopt, 10000);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(*id, 9);
  ASSERT_TRUE(c.wait_for_peer_left(9, 10000).ok());
  srv.join();
  ASSERT_TRUE(c.process_events().ok());
  EXPECT_EQ(events, (std::vector<std::pair<char, PeerId>>{{'+', 9}, {'-', 9}}));
  EXPECT_TRUE(c.connected());
}

TEST(IvshmemClient, DepartureOfOurOwnIdIsAProtocolError) {
  FakeServer srv([](int s) {
    send_prologue(s, 4);
    send_new_eventfd(s, 4);
    send_ok(s, 4);
  });
  IvshmemClient c(opts(1));
  ASSERT_TRUE(connect_to(c, srv).ok());
  srv.join();
  Result<std::size_t> r = std::size_t{0};
  ASSERT_TRUE(test::wait_until(
      [&] {
        r = c.process_events();
        return !r.ok();
      },
      10000));
  EXPECT_EQ(r.error().code, EPROTO);
  EXPECT_NE(r.error().message.find("our own id 4"), std::string::npos) << r.error().message;
  EXPECT_FALSE(c.connected());
}

TEST(IvshmemClient, WaitForPeerTimesOut) {
  FakeServer srv([](int s) {
    send_prologue(s, 0);
    send_new_eventfd(s, 0);
  });
  IvshmemClient c(opts(1));
  ASSERT_TRUE(connect_to(c, srv).ok());
  auto r = c.wait_for_peer(5, 100);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ETIMEDOUT);
  EXPECT_NE(r.error().message.find("peer 5"), std::string::npos);
}

TEST(IvshmemClient, NegativeTimeoutWaitsForever) {
  FakeServer srv([](int s) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    send_prologue(s, 0);
    send_new_eventfd(s, 0);
  });
  IvshmemClient c(opts(1, -1));
  auto s = connect_to(c, srv);
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST(IvshmemClient, RejectsZeroVectors) {
  IvshmemClient c(opts(0));
  expect_error(c.connect("/nonexistent"), EINVAL, "vectors");
}

}  // namespace
}  // namespace tosec::rpc
