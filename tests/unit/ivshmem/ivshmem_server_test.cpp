// IvshmemServer in-process (on a thread): the exact message sequence, doorbells between two
// clients, departures, id reuse, and peers that misbehave.
#include "ivshmem_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <array>
#include <cstring>

#include "ivshmem_test_support.h"
#include "tosec/rpc/ivshmem_client.h"
#include "tosec/rpc/ivshmem_protocol.h"

namespace tosec::host {
namespace {

using rpc::IvshmemClient;
using rpc::UniqueFd;
using test::ServerThread;
using test::TempDir;

constexpr int kTimeoutMs = 5000;

UniqueFd raw_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) fd.reset();
  const timeval tv{10, 0};  // a missing message fails the test instead of hanging it
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// One message read with plain recvmsg, independently of ivshmem::recv_msg.
struct RawMsg {
  std::array<unsigned char, 8> bytes{};
  std::vector<UniqueFd> fds;
};

RawMsg raw_recv(int sock) {
  RawMsg m;
  iovec iov{m.bytes.data(), m.bytes.size()};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * 4)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const auto n = ::recvmsg(sock, &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC);
  EXPECT_EQ(n, 8) << "expected one whole 8-byte message";
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    EXPECT_EQ(c->cmsg_level, SOL_SOCKET);
    EXPECT_EQ(c->cmsg_type, SCM_RIGHTS);
    for (std::size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      m.fds.emplace_back(fd);
    }
  }
  return m;
}

std::array<unsigned char, 8> le(std::int64_t v) {
  std::array<unsigned char, 8> b{};
  auto u = static_cast<std::uint64_t>(v);
  for (auto& c : b) {
    c = static_cast<unsigned char>(u & 0xff);
    u >>= 8;
  }
  return b;
}

std::string fd_kind(int fd) {
  char buf[128] = {};
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const auto n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

void expect_msg(int sock, std::int64_t value, bool with_fd, const char* what) {
  SCOPED_TRACE(what);
  RawMsg m = raw_recv(sock);
  EXPECT_EQ(m.bytes, le(value));
  EXPECT_EQ(m.fds.size(), with_fd ? 1U : 0U);
}

bool readable(int fd, int timeout_ms = 0) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

IvshmemServerConfig config(const TempDir& dir, unsigned vectors) {
  IvshmemServerConfig c;
  c.socket_path = dir.file("ivshmem.sock");
  c.vectors = vectors;
  return c;
}

std::unique_ptr<IvshmemClient> connect_client(const std::string& path, unsigned vectors) {
  auto c = std::make_unique<IvshmemClient>(rpc::IvshmemClientOptions{vectors, kTimeoutMs});
  auto s = c->connect(path);
  EXPECT_TRUE(s.ok()) << s.message();
  return s.ok() ? std::move(c) : nullptr;
}

TEST(IvshmemServer, HandshakeSequenceIsByteExact) {
  TempDir dir;
  ServerThread srv(config(dir, 3), 1 << 20);
  ASSERT_TRUE(srv.ok()) << srv.error();
  const std::string path = dir.file("ivshmem.sock");

  UniqueFd a = raw_connect(path);
  ASSERT_TRUE(a.valid());
  expect_msg(a.get(), 0, false, "A: protocol version 0");
  expect_msg(a.get(), 0, false, "A: own id 0");
  RawMsg shm = raw_recv(a.get());
  EXPECT_EQ(shm.bytes, le(-1));
  ASSERT_EQ(shm.fds.size(), 1U);
  struct stat st {};
  ASSERT_EQ(::fstat(shm.fds[0].get(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  std::vector<UniqueFd> a_own;
  for (int v = 0; v < 3; ++v) {
    RawMsg m = raw_recv(a.get());
    EXPECT_EQ(m.bytes, le(0)) << "own vector " << v;
    ASSERT_EQ(m.fds.size(), 1U);
    EXPECT_EQ(fd_kind(m.fds[0].get()), "anon_inode:[eventfd]");
    a_own.push_back(std::move(m.fds[0]));
  }
  EXPECT_FALSE(readable(a.get(), 100)) << "nothing may follow the own vectors";

  UniqueFd b = raw_connect(path);
  ASSERT_TRUE(b.valid());
  expect_msg(b.get(), 0, false, "B: version");
  expect_msg(b.get(), 1, false, "B: own id 1");
  expect_msg(b.get(), -1, true, "B: shared memory");
  std::vector<UniqueFd> b_sees_a;
  for (int v = 0; v < 3; ++v) {
    RawMsg m = raw_recv(b.get());
    EXPECT_EQ(m.bytes, le(0)) << "existing peer 0, vector " << v;
    ASSERT_EQ(m.fds.size(), 1U);
    b_sees_a.push_back(std::move(m.fds[0]));
  }
  for (int v = 0; v < 3; ++v) expect_msg(b.get(), 1, true, "B: own vector");
  for (int v = 0; v < 3; ++v) expect_msg(a.get(), 1, true, "A: new peer 1, one per vector");

  // B's fd for (A, vector 1) is A's own vector 1 and nothing else.
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(b_sees_a[1].get(), &one, sizeof one), 8);
  EXPECT_TRUE(readable(a_own[1].get(), 1000));
  EXPECT_FALSE(readable(a_own[0].get()));
  EXPECT_FALSE(readable(a_own[2].get()));

  b.reset();
  expect_msg(a.get(), 1, false, "A: peer 1 left (id, no fd)");
}

TEST(IvshmemServer, TwoClientsRingEachOther) {
  TempDir dir;
  ServerThread srv(config(dir, 2));
  ASSERT_TRUE(srv.ok()) << srv.error();
  auto a = connect_client(dir.file("ivshmem.sock"), 2);
  auto b = connect_client(dir.file("ivshmem.sock"), 2);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->self_id(), 0);
  EXPECT_EQ(b->self_id(), 1);
  EXPECT_EQ(b->peers(), std::vector<rpc::PeerId>{0});
  ASSERT_TRUE(a->wait_for_peer(1, kTimeoutMs).ok());
  EXPECT_EQ(a->doorbells().peer_vector_count(1), 2U);

  ASSERT_TRUE(a->doorbells().ring(1, 1).ok());
  auto rung = b->doorbells().wait(1, 2'000'000'000);
  ASSERT_TRUE(rung.ok());
  EXPECT_TRUE(*rung);
  auto other = b->doorbells().wait(0, 0);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(*other) << "vector 0 was not rung";

  ASSERT_TRUE(b->doorbells().ring(0, 0).ok());
  rung = a->doorbells().wait(0, 2'000'000'000);
  ASSERT_TRUE(rung.ok());
  EXPECT_TRUE(*rung);

  // Both see one region.
  ASSERT_EQ(a->region().size(), 1U << 20);
  std::memcpy(a->region().data() + 4096, "tosec", 6);
  EXPECT_STREQ(reinterpret_cast<const char*>(b->region().data() + 4096), "tosec");
}

TEST(IvshmemServer, DepartureIsAnnouncedAndFiresCallback) {
  TempDir dir;
  ServerThread srv(config(dir, 1));
  ASSERT_TRUE(srv.ok()) << srv.error();
  auto a = connect_client(dir.file("ivshmem.sock"), 1);
  ASSERT_TRUE(a);
  std::vector<rpc::PeerId> joined, left;
  a->on_peer_joined([&](rpc::PeerId id) {
    joined.push_back(id);
    EXPECT_TRUE(a->doorbells().ring(id, 0).ok()) << "all vectors ringable in the callback";
  });
  a->on_peer_left([&](rpc::PeerId id) { left.push_back(id); });
  auto b = connect_client(dir.file("ivshmem.sock"), 1);
  ASSERT_TRUE(b);
  auto id = a->wait_for_peer(std::nullopt, kTimeoutMs);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(*id, 1);
  b.reset();
  ASSERT_TRUE(a->wait_for_peer_left(1, kTimeoutMs).ok());
  EXPECT_EQ(joined, std::vector<rpc::PeerId>{1});
  EXPECT_EQ(left, std::vector<rpc::PeerId>{1});
  EXPECT_FALSE(a->doorbells().has_peer(1));
  EXPECT_EQ(a->doorbells().ring(1, 0).code(), ENOENT);
  EXPECT_TRUE(a->peers().empty());
}

TEST(IvshmemServer, IdsOfDepartedPeersAreReused) {
  TempDir dir;
  ServerThread srv(config(dir, 1));
  ASSERT_TRUE(srv.ok()) << srv.error();
  const std::string path = dir.file("ivshmem.sock");
  auto a = connect_client(path, 1);
  auto b = connect_client(path, 1);
  auto c = connect_client(path, 1);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(c->self_id(), 2);
  b.reset();
  ASSERT_TRUE(a->wait_for_peer(1, kTimeoutMs).ok());  // A heard of B (maybe gone again)
  ASSERT_TRUE(a->wait_for_peer_left(1, kTimeoutMs).ok());
  auto d = connect_client(path, 1);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->self_id(), 1) << "lowest free id is reused";
  auto e = connect_client(path, 1);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->self_id(), 3);
  EXPECT_EQ(e->peers(), (std::vector<rpc::PeerId>{0, 1, 2}));
}

TEST(IvshmemServer, RoundRobinPolicyMatchesQemu) {
  TempDir dir;
  auto cfg = config(dir, 1);
  cfg.id_policy = IdPolicy::kRoundRobin;
  ServerThread srv(cfg);
  ASSERT_TRUE(srv.ok()) << srv.error();
  const std::string path = dir.file("ivshmem.sock");
  auto a = connect_client(path, 1);
  auto b = connect_client(path, 1);
  ASSERT_TRUE(a && b);
  b.reset();
  ASSERT_TRUE(a->wait_for_peer(1, kTimeoutMs).ok());
  ASSERT_TRUE(a->wait_for_peer_left(1, kTimeoutMs).ok());
  auto c = connect_client(path, 1);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->self_id(), 2) << "QEMU's counter moves on instead of reusing 1";
}

TEST(IvshmemServer, SurvivesClientsThatLeaveMidHandshake) {
  TempDir dir;
  ServerThread srv(config(dir, 2));
  ASSERT_TRUE(srv.ok()) << srv.error();
  const std::string path = dir.file("ivshmem.sock");
  auto a = connect_client(path, 2);
  ASSERT_TRUE(a);
  {
    UniqueFd r = raw_connect(path);  // reads the version only
    ASSERT_TRUE(r.valid());
    expect_msg(r.get(), 0, false, "version");
  }
  { UniqueFd r = raw_connect(path); }  // reads nothing at all
  {
    UniqueFd r = raw_connect(path);  // hangs up with unread fds queued
    ASSERT_TRUE(r.valid());
    ::shutdown(r.get(), SHUT_RDWR);
  }
  // A heard of each and of each departure.
  int joins = 0, leaves = 0;
  a->on_peer_joined([&](rpc::PeerId) { ++joins; });
  a->on_peer_left([&](rpc::PeerId) { ++leaves; });
  ASSERT_TRUE(test::wait_until(
      [&] {
        EXPECT_TRUE(a->process_events().ok());
        return joins == 3 && leaves == 3;
      },
      kTimeoutMs))
      << joins << " joins, " << leaves << " leaves";
  EXPECT_TRUE(a->peers().empty());
  EXPECT_FALSE(a->doorbells().has_peer(1));
  auto b = connect_client(path, 2);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->self_id(), 1);
  EXPECT_EQ(b->peers(), std::vector<rpc::PeerId>{0});
  ASSERT_TRUE(a->wait_for_peer(1, kTimeoutMs).ok());
}

TEST(IvshmemServer, PeerThatSendsDataIsDropped) {
  TempDir dir;
  ServerThread srv(config(dir, 1));
  ASSERT_TRUE(srv.ok()) << srv.error();
  const std::string path = dir.file("ivshmem.sock");
  auto a = connect_client(path, 1);
  ASSERT_TRUE(a);
  UniqueFd r = raw_connect(path);
  ASSERT_TRUE(r.valid());
  ASSERT_TRUE(a->wait_for_peer(1, kTimeoutMs).ok());
  ASSERT_EQ(::send(r.get(), "x", 1, MSG_NOSIGNAL), 1);  // the protocol is one-way
  EXPECT_TRUE(a->wait_for_peer_left(1, kTimeoutMs).ok());
}

TEST(IvshmemServer, PeerThatStopsReadingIsDroppedWithoutStallingOthers) {
  test::raise_fd_limit();
  TempDir dir;
  auto cfg = config(dir, 16);
  cfg.max_queued_per_peer = 32;
  ServerThread srv(cfg);
  ASSERT_TRUE(srv.ok()) << srv.error();
  const std::string path = dir.file("ivshmem.sock");
  auto observer = connect_client(path, 16);
  ASSERT_TRUE(observer);
  UniqueFd stuck = raw_connect(path);  // never reads a byte
  ASSERT_TRUE(stuck.valid());
  ASSERT_TRUE(observer->wait_for_peer(1, kTimeoutMs).ok());
  // Every join and leave queues messages for the stuck peer until its socket buffer and then
  // its queue are full; meanwhile everyone else must be served promptly.
  bool dropped = false;
  for (int i = 0; i < 2000 && !dropped; ++i) {
    auto joiner = connect_client(path, 16);
    ASSERT_TRUE(joiner) << "server stalled at join " << i;
    joiner.reset();
    ASSERT_TRUE(observer->process_events().ok());
    dropped = !observer->doorbells().has_peer(1);
  }
  EXPECT_TRUE(dropped) << "a peer that never reads must eventually be dropped";
}

TEST(IvshmemServer, StopDisconnectsClientsWhoKeepTheirDoorbells) {
  TempDir dir;
  ServerThread srv(config(dir, 1));
  ASSERT_TRUE(srv.ok()) << srv.error();
  auto a = connect_client(dir.file("ivshmem.sock"), 1);
  auto b = connect_client(dir.file("ivshmem.sock"), 1);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->wait_for_peer(1, kTimeoutMs).ok());
  srv.stop();
  EXPECT_FALSE(test::path_exists(dir.file("ivshmem.sock"))) << "socket file unlinked";
  ASSERT_TRUE(test::wait_until([&] { return !a->process_events().ok(); }, kTimeoutMs));
  EXPECT_FALSE(a->connected());
  auto again = a->process_events();
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ENOTCONN);
  // As the spec allows, peers can go on ringing each other without the server.
  ASSERT_TRUE(a->doorbells().ring(1, 0).ok());
  auto rung = b->doorbells().wait(0, 2'000'000'000);
  ASSERT_TRUE(rung.ok());
  EXPECT_TRUE(*rung);
}

TEST(IvshmemServer, ProcessEventsReportsServerGoneClearly) {
  TempDir dir;
  auto srv = std::make_unique<ServerThread>(config(dir, 1));
  ASSERT_TRUE(srv->ok()) << srv->error();
  auto a = connect_client(dir.file("ivshmem.sock"), 1);
  ASSERT_TRUE(a);
  srv.reset();
  rpc::Result<std::size_t> r = std::size_t{0};
  ASSERT_TRUE(test::wait_until(
      [&] {
        r = a->process_events();
        return !r.ok();
      },
      kTimeoutMs));
  EXPECT_EQ(r.error().code, ECONNRESET);
  EXPECT_NE(r.error().message.find("server closed the connection"), std::string::npos)
      << r.error().message;
}

TEST(IvshmemServer, StartRejectsBadSetups) {
  TempDir dir;
  auto cfg = config(dir, kMaxIvshmemVectors + 1);
  auto s = IvshmemServer::start(cfg, test::make_memfd(4096));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, EINVAL);

  cfg = config(dir, 1);
  cfg.socket_path = dir.path() + "/" + std::string(120, 'x');
  s = IvshmemServer::start(cfg, test::make_memfd(4096));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENAMETOOLONG);

  cfg = config(dir, 1);
  { std::ofstream(cfg.socket_path) << "not a socket"; }
  s = IvshmemServer::start(cfg, test::make_memfd(4096));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, EEXIST);
  EXPECT_NE(s.error().message.find("not a socket"), std::string::npos);
  EXPECT_TRUE(test::path_exists(cfg.socket_path)) << "never delete someone else's file";
}

TEST(IvshmemServer, ReplacesStaleSocketButNotALiveOne) {
  TempDir dir;
  const auto cfg = config(dir, 1);
  {
    // A socket file whose server died: bound, then closed without unlink.
    UniqueFd dead(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, cfg.socket_path.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(dead.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  }
  ServerThread live(cfg);
  ASSERT_TRUE(live.ok()) << live.error();
  auto second = IvshmemServer::start(cfg, test::make_memfd(4096));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, EADDRINUSE);
  EXPECT_NE(second.error().message.find("already listening"), std::string::npos);
  auto c = connect_client(cfg.socket_path, 1);
  EXPECT_TRUE(c) << "the live server still serves";
}

TEST(PeerIdAllocator, LowestFreeReusesAtOnce) {
  PeerIdAllocator ids(IdPolicy::kLowestFree, 3);
  EXPECT_EQ(ids.allocate(), 0);
  EXPECT_EQ(ids.allocate(), 1);
  EXPECT_EQ(ids.allocate(), 2);
  ids.release(1);
  EXPECT_EQ(ids.allocate(), 1);
  EXPECT_EQ(ids.allocate(), 3);
  EXPECT_EQ(ids.allocate(), std::nullopt) << "id space exhausted";
  ids.release(0);
  EXPECT_EQ(ids.allocate(), 0);
}

TEST(PeerIdAllocator, RoundRobinSkipsIdsInUseAndWraps) {
  PeerIdAllocator ids(IdPolicy::kRoundRobin, 3);
  EXPECT_EQ(ids.allocate(), 0);
  EXPECT_EQ(ids.allocate(), 1);
  ids.release(0);
  EXPECT_EQ(ids.allocate(), 2);
  EXPECT_EQ(ids.allocate(), 3);
  EXPECT_EQ(ids.allocate(), 0) << "wrapped around";
  EXPECT_EQ(ids.allocate(), std::nullopt);
  ids.release(2);
  EXPECT_EQ(ids.allocate(), 2);
  EXPECT_EQ(ids.in_use_count(), 4U);
}

TEST(PeerIdAllocator, FullSixteenBitSpace) {
  PeerIdAllocator ids;
  for (std::uint32_t i = 0; i <= 0xFFFF; ++i) ASSERT_EQ(ids.allocate(), static_cast<PeerId>(i));
  EXPECT_EQ(ids.allocate(), std::nullopt);
  ids.release(0xFFFF);
  EXPECT_EQ(ids.allocate(), 0xFFFF);
}

}  // namespace
}  // namespace tosec::host
