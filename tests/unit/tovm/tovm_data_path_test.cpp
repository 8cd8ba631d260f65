// The TOE's data path against real kernel sockets, driven by a fake guest: connect + echo with
// checksums both ways, listen + accept, receive backpressure, UDP.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <random>

#include "fake_guest.h"
#include "kernel_peer.h"
#include "toe_harness.h"
#include "toe_with_guest.h"

namespace tosec::tovm::test {
namespace {

using rpc::Op;

std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng() & 0xFF);
  return v;
}

std::uint64_t checksum(std::span<const std::byte> d, std::uint64_t h = 1469598103934665603ULL) {
  for (auto b : d) h = (h ^ static_cast<std::uint8_t>(b)) * 1099511628211ULL;
  return h;
}

bool readable(int fd, int timeout_ms = kWaitMs) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}
bool writable(int fd, int timeout_ms = kWaitMs) {
  pollfd p{fd, POLLOUT, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLOUT) != 0;
}
void fill(int fd) {
  char junk[4096] = {};
  while (::send(fd, junk, sizeof junk, MSG_DONTWAIT) > 0) {
  }
}

// Guest side: connect socket `id` to 127.0.0.1:port through the TOE; true once connected.
bool guest_connect(FakeGuest& g, std::uint32_t id, int a_fd, std::uint16_t port) {
  fill(a_fd);  // as the shim does: A unwritable while connecting, then tx_blocked published
  g.slot(id)->tx_blocked.store(1, std::memory_order_seq_cst);
  const sockaddr_in addr = loopback(port);
  const std::int64_t r = g.addr_op(Op::kConnect, id, &addr, sizeof addr);
  if (r != 0 && r != -EINPROGRESS) return false;
  if (!wait_for([&] {
        return g.slot(id)->state.load(std::memory_order_acquire) == rpc::SocketState::kConnected;
      })) {
    return false;
  }
  return writable(a_fd);  // the TOE drained B
}

// Receives exactly `n` bytes from `id`'s rx ring (returning chunks as it goes).
std::vector<std::byte> guest_recv(FakeGuest& g, std::uint32_t id, std::size_t n) {
  std::vector<std::byte> out;
  wait_for([&] {
    for (const auto& e : g.take_rx(id)) {
      auto c = g.channel().rx_pool().chunk(e.chunk);
      out.insert(out.end(), c.begin(), c.begin() + e.length);
      g.return_rx(id, e.chunk);
    }
    return out.size() >= n;
  });
  return out;
}

// Sends all of `data` through the TOE, reusing chunks as completions come back.
bool guest_send_all(FakeGuest& g, std::uint32_t id, std::span<const std::byte> data) {
  const std::size_t chunk = g.channel().config().chunk_size;
  for (std::size_t off = 0; off < data.size(); off += chunk) {
    if (!g.send_async(id, data.subspan(off, std::min(chunk, data.size() - off)))) return false;
  }
  return true;
}

// A guest stream socket (placeholder end `a`) connected through the TOE to `srv`, whose
// accepted end is `peer`. The socket id, or -1.
std::int64_t connected_socket(FakeGuest& g, KernelListener& srv, rpc::UniqueFd& a,
                              rpc::UniqueFd& peer) {
  const std::int64_t id = g.socket(AF_INET, SOCK_STREAM, a);
  if (id < 0 || !guest_connect(g, static_cast<std::uint32_t>(id), a.get(), srv.port)) return -1;
  peer = srv.accept_one();
  return peer.valid() ? id : -1;
}

class TovmDataPath : public ToeWithGuest {};

TEST_F(TovmDataPath, ConnectAndEchoBothWaysWithChecksums) {
  KernelListener srv;
  ASSERT_NE(srv.port, 0);

  rpc::UniqueFd a;
  const std::int64_t id = g_->socket(AF_INET, SOCK_STREAM, a);
  ASSERT_GE(id, 0);
  const auto sid = static_cast<std::uint32_t>(id);
  EXPECT_EQ(g_->slot(sid)->state.load(), rpc::SocketState::kOpen);
  ASSERT_TRUE(guest_connect(*g_, sid, a.get(), srv.port));
  rpc::UniqueFd peer = srv.accept_one();
  ASSERT_TRUE(peer.valid());
  EXPECT_EQ(g_->slot(sid)->peer.length, sizeof(sockaddr_in));

  // An echo server on the kernel side.
  constexpr std::size_t kBytes = 1 << 20;
  std::thread echo([&] { echo_bytes(peer.get(), kBytes); });
  const auto data = random_bytes(kBytes, 7);
  std::vector<std::byte> back;
  std::thread sender([&] { EXPECT_TRUE(guest_send_all(*g_, sid, data)); });
  sender.join();
  back = guest_recv(*g_, sid, kBytes);
  echo.join();
  ASSERT_EQ(back.size(), kBytes);
  EXPECT_EQ(checksum(back), checksum(data));
  EXPECT_TRUE(readable(a.get(), 0)) << "the TOE signalled A readable";

  // Peer closes: kEvPeerClosed is published and A is readable.
  peer.reset();
  EXPECT_TRUE(wait_for([&] { return (g_->slot(sid)->events.load() & rpc::kEvPeerClosed) != 0; }));
  const std::string st = toe_.status();
  EXPECT_EQ(ToeHarness::stat_in(st, "bytes_from_guest"), static_cast<std::int64_t>(kBytes));
  EXPECT_EQ(ToeHarness::stat_in(st, "bytes_to_guest"), static_cast<std::int64_t>(kBytes));
  EXPECT_EQ(ToeHarness::stat_in(st, "bytes_tx_wire"), static_cast<std::int64_t>(kBytes));
  EXPECT_EQ(ToeHarness::stat_in(st, "connected"), 1);
  EXPECT_EQ(ToeHarness::stat_in(st, "bad_descriptors"), 0);

  // Last reference closed: the TOE closes the socket and frees the slot.
  a.reset();
  EXPECT_TRUE(wait_for([&] { return toe_.stat("open") == 0; })) << toe_.status();
  EXPECT_EQ(g_->slot(sid)->state.load(), rpc::SocketState::kFree);
}

// guest_channel.h, "two refinements": while the guest claims the socket (a reader spinning on
// the ring) an arrival writes no readiness byte into B; otherwise it writes one and counts it
// in rx_bytes_signalled first. A FIN while claimed still makes A readable (B shut), byte-less.
TEST_F(TovmDataPath, ClaimedArrivalsWriteNoReadinessByteOthersAreCounted) {
  KernelListener srv;
  ASSERT_NE(srv.port, 0);
  rpc::UniqueFd a;
  rpc::UniqueFd peer;
  const std::int64_t id = connected_socket(*g_, srv, a, peer);
  ASSERT_GE(id, 0);
  const auto sid = static_cast<std::uint32_t>(id);
  rpc::SocketSlot* slot = g_->slot(sid);
  auto take_all = [&](std::size_t want) {
    std::size_t got = 0;
    wait_for([&] {
      for (const auto& e : g_->take_rx(sid)) {
        got += e.length;
        g_->return_rx(sid, e.chunk);
      }
      return got >= want;
    });
    return got;
  };
  auto a_queued = [&] {
    int n = -1;
    (void)::ioctl(a.get(), SIOCINQ, &n);
    return n;
  };

  slot->rx_signalled.store(rpc::kRxClaimed, std::memory_order_seq_cst);
  ASSERT_EQ(::send(peer.get(), "claimed", 7, 0), 7);
  EXPECT_EQ(take_all(7), 7U);
  EXPECT_FALSE(readable(a.get(), 100)) << "a claimed arrival wrote a readiness byte";
  EXPECT_EQ(slot->rx_bytes_signalled.load(), 0U);
  EXPECT_EQ(slot->rx_signalled.load(), rpc::kRxClaimed) << "the TOE must leave the claim alone";

  slot->rx_signalled.store(0, std::memory_order_seq_cst);
  ASSERT_EQ(::send(peer.get(), "open", 4, 0), 4);
  EXPECT_EQ(take_all(4), 4U);
  EXPECT_TRUE(readable(a.get()));
  EXPECT_EQ(a_queued(), 1);
  EXPECT_EQ(slot->rx_bytes_signalled.load(), 1U);
  EXPECT_EQ(slot->rx_signalled.load(), 1U);

  // Drained as the shim does it, then claimed again: the FIN makes A readable (POLLRDHUP, B
  // shut) without a byte.
  char b;
  ASSERT_EQ(::recv(a.get(), &b, 1, MSG_DONTWAIT), 1);
  slot->rx_bytes_drained = 1;
  slot->rx_signalled.store(rpc::kRxClaimed, std::memory_order_seq_cst);
  peer.reset();
  EXPECT_TRUE(wait_for([&] { return (slot->events.load() & rpc::kEvPeerClosed) != 0; }));
  pollfd p{a.get(), POLLIN | POLLRDHUP, 0};
  EXPECT_EQ(::poll(&p, 1, kWaitMs), 1);
  EXPECT_NE(p.revents & POLLRDHUP, 0);
  EXPECT_EQ(a_queued(), 0);
  EXPECT_EQ(slot->rx_bytes_signalled.load(), 1U);
}

// Sets the affinity of every thread of this process; false if one of them refused.
bool pin_all_threads(const cpu_set_t& cpus) {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return false;
  bool ok = true;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.')
      ok = ::sched_setaffinity(std::atoi(e->d_name), sizeof cpus, &cpus) == 0 && ok;
  }
  ::closedir(d);
  return ok;
}

// Puts every thread of this process on one CPU, for the scope: the TOE's worker thread then
// shares a core with the test thread, as a guest and its TOE do on a small host. Threads that
// are still alive at the end (this one) get their CPUs back.
class OneCpu {
 public:
  OneCpu() {
    ok_ = ::sched_getaffinity(0, sizeof saved_, &saved_) == 0;
    const int cpu = sched_getcpu();
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(static_cast<std::size_t>(cpu >= 0 ? cpu : 0), &one);
    ok_ = pin_all_threads(one) && ok_;
  }
  ~OneCpu() { (void)pin_all_threads(saved_); }
  OneCpu(const OneCpu&) = delete;
  OneCpu& operator=(const OneCpu&) = delete;
  bool ok() const { return ok_; }

 private:
  cpu_set_t saved_{};
  bool ok_ = false;
};

// A reader woken by A after the peer's FIN must find the FIN in the slot. If A showed
// POLLIN|POLLRDHUP first, a reader woken in between found no data and no event and went back
// to a ppoll that returned at once: with the TOE on its core it spun a whole time slice
// (TCP_CRR pinned to one CPU: 830 connections/s, 4400 with the event first). Sharing one CPU
// makes the waking reader likely to run before the TOE's next instruction.
TEST_F(TovmDataPath, PeerFinIsInTheSlotBeforeAShowsIt) {
  const OneCpu pinned;
  ASSERT_TRUE(pinned.ok()) << "sched_setaffinity";
  KernelListener srv;
  ASSERT_NE(srv.port, 0);
  for (int round = 0; round < 50; ++round) {
    rpc::UniqueFd a;
    rpc::UniqueFd peer;
    const std::int64_t id = connected_socket(*g_, srv, a, peer);
    ASSERT_GE(id, 0) << "round " << round;
    rpc::SocketSlot* slot = g_->slot(static_cast<std::uint32_t>(id));
    peer.reset();
    pollfd p{a.get(), POLLIN | POLLRDHUP, 0};
    ASSERT_EQ(::poll(&p, 1, kWaitMs), 1) << "round " << round;
    EXPECT_NE(slot->events.load(std::memory_order_acquire) & rpc::kEvPeerClosed, 0U)
        << "round " << round << ": A shows POLLIN|POLLRDHUP (revents " << p.revents
        << ") before the slot says the peer closed";
  }
}

TEST_F(TovmDataPath, ListenAndAccept) {
  rpc::UniqueFd la;
  const std::int64_t lid = g_->socket(AF_INET, SOCK_STREAM, la);
  ASSERT_GE(lid, 0);
  const auto lsid = static_cast<std::uint32_t>(lid);
  const sockaddr_in any = loopback(0);
  ASSERT_EQ(g_->addr_op(Op::kBind, lsid, &any, sizeof any), 0);
  ASSERT_EQ(g_->simple(Op::kListen, lsid, 8), 0);
  EXPECT_EQ(g_->slot(lsid)->state.load(), rpc::SocketState::kListening);
  sockaddr_in local{};
  ASSERT_EQ(g_->slot(lsid)->local.length, sizeof local);
  std::memcpy(&local, g_->slot(lsid)->local.bytes, sizeof local);
  ASSERT_NE(local.sin_port, 0);

  rpc::UniqueFd none;
  EXPECT_EQ(g_->accept(lsid, none), -EAGAIN) << "nothing pending yet";

  rpc::UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local), 0);
  ASSERT_TRUE(readable(la.get())) << "listener placeholder signalled";
  EXPECT_TRUE(wait_for([&] { return g_->slot(lsid)->accept_ready.load() == 1; }));

  rpc::UniqueFd ca;
  const std::int64_t cid = g_->accept(lsid, ca);
  ASSERT_GE(cid, 0);
  const auto csid = static_cast<std::uint32_t>(cid);
  EXPECT_EQ(g_->slot(csid)->state.load(), rpc::SocketState::kConnected);
  EXPECT_EQ(g_->slot(csid)->peer.length, sizeof(sockaddr_in));
  EXPECT_EQ(g_->slot(lsid)->accept_ready.load(), 0U);

  ASSERT_EQ(::send(client.get(), "hello", 5, 0), 5);
  auto got = guest_recv(*g_, csid, 5);
  ASSERT_EQ(got.size(), 5U);
  EXPECT_EQ(std::memcmp(got.data(), "hello", 5), 0);
  const char world[] = "world";
  ASSERT_TRUE(g_->send_async(csid, std::as_bytes(std::span(world, 5))));
  char buf[8] = {};
  ASSERT_TRUE(readable(client.get()));
  EXPECT_EQ(::recv(client.get(), buf, sizeof buf, 0), 5);
  EXPECT_STREQ(buf, "world");
  EXPECT_EQ(toe_.stat("listening"), 1);
  EXPECT_EQ(toe_.stat("connected"), 1);
}

TEST_F(TovmDataPath, ReceiveBackpressureStopsReadingAndNeverDrops) {
  // The harness: 64 rx chunks of 4 KiB, 16 rx entries per socket
  KernelListener srv;
  rpc::UniqueFd a;
  const auto sid = static_cast<std::uint32_t>(g_->socket(AF_INET, SOCK_STREAM, a));
  // Small kernel buffers on both sides, so the stall reaches the sender whatever the host's
  // autotuning limits are (the guest's setsockopt goes to the TOE's kernel socket).
  const int small = 65536;
  ASSERT_EQ(g_->setsockopt(sid, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  ASSERT_TRUE(guest_connect(*g_, sid, a.get(), srv.port));
  rpc::UniqueFd peer = srv.accept_one();
  ASSERT_TRUE(peer.valid());
  ::setsockopt(peer.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);

  constexpr std::size_t kBytes = 8 << 20;  // far more than rx ring + kernel buffers hold
  const auto data = random_bytes(kBytes, 11);
  std::atomic<std::size_t> written{0};
  std::thread writer([&] {
    std::size_t off = 0;
    while (off < kBytes) {
      const ssize_t n = ::send(peer.get(), data.data() + off,
                               std::min<std::size_t>(65536, kBytes - off), MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
      written.store(off);
    }
  });
  // The guest takes nothing: the TOE must stop at its ring (16 entries) and stop reading.
  ASSERT_TRUE(wait_for([&] { return toe_.stat("rx_backpressure_events") >= 1; })) << toe_.status();
  std::int64_t rx_wire = toe_.stat("bytes_rx_wire");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(toe_.stat("bytes_rx_wire"), rx_wire) << "the TOE kept reading without room";
  EXPECT_LE(rx_wire, 16 * 4096);
  EXPECT_LT(written.load(), kBytes) << "TCP backpressure reached the sender";
  // Now consume everything: all bytes arrive, in order.
  auto got = guest_recv(*g_, sid, kBytes);
  writer.join();
  ASSERT_EQ(got.size(), kBytes);
  EXPECT_EQ(checksum(got), checksum(data));
  EXPECT_GE(toe_.stat("rx_backpressure_events"), 1);
  EXPECT_EQ(toe_.stat("rx_chunks_lent"), 0);
}

// A kBufferReturn can sit in a lane's request ring while its socket closes: the close
// reclaims the socket's chunks, the next socket is lent the same chunks (the free list is LIFO),
// and then the late return arrives. It must not end the new loan, or the TOE would fill a chunk
// the guest is still reading (seen as 16-64 KiB of another stream inside a download).
TEST_F(TovmDataPath, LateBufferReturnCannotEndANewerLoan) {
  // The harness: 64 rx chunks of 4 KiB
  KernelListener srv;
  constexpr std::size_t kChunk = 4096;
  // Takes entries of `id` until `n` bytes came, handing each to `f`.
  auto take_bytes = [&](std::uint32_t id, std::size_t n, auto&& f) {
    std::size_t got = 0;
    wait_for([&] {
      for (const auto& e : g_->take_rx(id)) {
        got += e.length;
        f(e);
      }
      return got >= n;
    });
    return got;
  };
  struct Conn {
    rpc::UniqueFd a, peer;
    std::uint32_t id = 0;
  };
  // A guest socket connected to `srv`, and `chunks` chunks of `fill` sent to it by the peer.
  auto connect_and_feed = [&](Conn& c, std::size_t chunks, char fill) {
    c.id = static_cast<std::uint32_t>(g_->socket(AF_INET, SOCK_STREAM, c.a));
    EXPECT_TRUE(guest_connect(*g_, c.id, c.a.get(), srv.port));
    c.peer = srv.accept_one();
    const std::vector<std::byte> v(chunks * kChunk, static_cast<std::byte>(fill));
    EXPECT_EQ(::send(c.peer.get(), v.data(), v.size(), 0), static_cast<ssize_t>(v.size()));
  };
  auto keep = [](std::vector<rpc::RxEntry>& to) {
    return [&to](const rpc::RxEntry& e) { to.push_back(e); };
  };

  // Socket X receives 4 chunks and closes without returning them.
  Conn x;
  connect_and_feed(x, 4, 'x');
  std::vector<rpc::RxEntry> x_entries;
  ASSERT_EQ(take_bytes(x.id, 4 * kChunk, keep(x_entries)), 4 * kChunk);
  const std::uint32_t x_gen = g_->slot(x.id)->generation.load();
  x.a.reset();
  ASSERT_TRUE(wait_for([&] { return toe_.stat("open") == 0; })) << toe_.status();
  g_->forget_rx_ring(x.id);

  // Socket Y (perhaps the same id, a new generation) is lent the same chunks.
  Conn y;
  connect_and_feed(y, 8, 'y');
  std::vector<rpc::RxEntry> y_held;
  ASSERT_EQ(take_bytes(y.id, 8 * kChunk, keep(y_held)), 8 * kChunk);
  bool reused = false;
  for (const auto& xe : x_entries) {
    for (const auto& ye : y_held) reused = reused || xe.chunk == ye.chunk;
  }
  ASSERT_TRUE(reused) << "precondition: Y holds a chunk X was lent";

  // X's late returns arrive now: counted, ignored.
  for (const auto& xe : x_entries) g_->return_rx(x.id, xe.chunk, x_gen);
  ASSERT_TRUE(wait_for([&] {
    return toe_.stat("stale_buffer_returns") == static_cast<std::int64_t>(x_entries.size());
  })) << toe_.status();
  EXPECT_EQ(toe_.stat("rx_chunks_lent"), static_cast<std::int64_t>(y_held.size()));

  // More data for Y goes into other chunks; what Y holds is untouched.
  const std::vector<std::byte> zs(4 * kChunk, std::byte{'z'});
  ASSERT_EQ(::send(y.peer.get(), zs.data(), zs.size(), 0), static_cast<ssize_t>(zs.size()));
  EXPECT_EQ(take_bytes(y.id, zs.size(),
                       [&](const rpc::RxEntry& e) {
                         for (const auto& h : y_held) {
                           EXPECT_NE(e.chunk, h.chunk) << "a chunk lent twice";
                         }
                         g_->return_rx(y.id, e.chunk);
                       }),
            zs.size());
  for (const auto& h : y_held) {
    auto c = g_->channel().rx_pool().chunk(h.chunk).first(h.length);
    EXPECT_TRUE(std::all_of(c.begin(), c.end(), [](std::byte b) { return b == std::byte{'y'}; }))
        << "Y's chunk " << h.chunk << " was overwritten";
    g_->return_rx(y.id, h.chunk);
  }
  EXPECT_TRUE(wait_for([&] { return toe_.stat("rx_chunks_lent") == 0; })) << toe_.status();
  EXPECT_EQ(toe_.stat("bad_descriptors"), 0);
}

TEST_F(TovmDataPath, SendBackpressureHoldsCompletionsUntilTheQueueDrains) {
  // The harness: 16 tx chunks of 4 KiB per lane; TOE queue cap 2 x SO_SNDBUF
  KernelListener srv;
  const int small = 65536;  // small kernel buffers: the stall is reached fast on any host
  ::setsockopt(srv.fd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  rpc::UniqueFd a;
  const auto sid = static_cast<std::uint32_t>(g_->socket(AF_INET, SOCK_STREAM, a));
  ASSERT_EQ(g_->setsockopt(sid, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  ASSERT_TRUE(guest_connect(*g_, sid, a.get(), srv.port));
  rpc::UniqueFd peer = srv.accept_one();
  ASSERT_TRUE(peer.valid());
  constexpr std::size_t kBytes = 8 << 20;  // more than the kernel buffers and the TOE cap hold
  const auto data = random_bytes(kBytes, 13);
  bool sent_all = false;
  std::thread sender([&] { sent_all = guest_send_all(*g_, sid, data); });
  // The peer reads nothing: the TOE queue fills to its cap, completions are held back and the
  // guest runs out of chunks (its credit) instead of the TOE buffering without bound.
  EXPECT_TRUE(wait_for([&] { return toe_.stat("tx_chunks_held") == 16; })) << toe_.status();
  const std::int64_t from_guest = toe_.stat("bytes_from_guest");
  EXPECT_LT(from_guest, static_cast<std::int64_t>(kBytes));
  EXPECT_LE(from_guest - toe_.stat("bytes_tx_wire"), 256 * 1024 + 16 * 4096);
  // Drain on the kernel side: everything arrives, in order.
  std::vector<std::byte> got(kBytes);
  std::size_t off = 0;
  while (off < kBytes) {
    if (!readable(peer.get())) break;
    const ssize_t n = ::recv(peer.get(), got.data() + off, kBytes - off, 0);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  sender.join();
  EXPECT_TRUE(sent_all);
  ASSERT_EQ(off, kBytes);
  EXPECT_EQ(checksum(got), checksum(data));
  EXPECT_TRUE(wait_for([&] { return toe_.stat("tx_chunks_held") == 0; })) << toe_.status();
}

TEST_F(TovmDataPath, UdpDatagramsCarryTheirSourceAddress) {
  rpc::UniqueFd k(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in ka = loopback(0);
  ASSERT_EQ(::bind(k.get(), reinterpret_cast<sockaddr*>(&ka), sizeof ka), 0);
  socklen_t kl = sizeof ka;
  ::getsockname(k.get(), reinterpret_cast<sockaddr*>(&ka), &kl);

  rpc::UniqueFd a;
  const auto sid = static_cast<std::uint32_t>(g_->socket(AF_INET, SOCK_DGRAM, a));
  const sockaddr_in any = loopback(0);
  ASSERT_EQ(g_->addr_op(Op::kBind, sid, &any, sizeof any), 0);
  sockaddr_in gl{};
  std::memcpy(&gl, g_->slot(sid)->local.bytes, sizeof gl);
  // sendto: the chunk starts with the sockaddr (arg1 = its length), then the payload.
  std::vector<std::byte> msg(sizeof ka + 4);
  std::memcpy(msg.data(), &ka, sizeof ka);
  std::memcpy(msg.data() + sizeof ka, "ping", 4);
  ASSERT_TRUE(g_->send_async(sid, msg, sizeof ka));
  char buf[16] = {};
  sockaddr_in from{};
  socklen_t fl = sizeof from;
  ASSERT_TRUE(readable(k.get()));
  ASSERT_EQ(::recvfrom(k.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl), 4);
  EXPECT_STREQ(buf, "ping");
  EXPECT_EQ(from.sin_port, gl.sin_port);
  ASSERT_EQ(::sendto(k.get(), "pong!", 5, 0, reinterpret_cast<sockaddr*>(&from), fl), 5);
  std::vector<rpc::RxEntry> e;
  ASSERT_TRUE(wait_for([&] {
    e = g_->take_rx(sid);
    return !e.empty();
  }));
  ASSERT_EQ(e[0].length, sizeof(rpc::SlotAddress) + 5);
  auto c = g_->channel().rx_pool().chunk(e[0].chunk);
  rpc::SlotAddress src{};
  std::memcpy(&src, c.data(), sizeof src);
  ASSERT_EQ(src.length, sizeof(sockaddr_in));
  sockaddr_in s{};
  std::memcpy(&s, src.bytes, sizeof s);
  EXPECT_EQ(s.sin_port, ka.sin_port);
  EXPECT_EQ(std::memcmp(c.data() + sizeof src, "pong!", 5), 0);
  g_->return_rx(sid, e[0].chunk);
}

}  // namespace
}  // namespace tosec::tovm::test
