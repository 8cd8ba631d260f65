// UDP: sendto/recvfrom with addresses (v4 and v6), datagram boundaries, connected UDP (default
// destination and source filter), MSG_TRUNC (flag and msg_flags), EAGAIN on an empty
// non-blocking socket, FIONREAD, ICMP port unreachable surfacing as ECONNREFUSED.
// Traps covered: T27 (UDP specifics), T19 (MSG_TRUNC), T8 (FIONREAD).
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "sock_util.h"

namespace sem {
namespace {

void make_udp(Fd* out, int family = AF_INET, int flags = 0) {
  int fd;
  SEM_SYS(fd, socket(family, SOCK_DGRAM | flags, 0));
  out->reset(fd);
  Addr a = loopback(family);
  SEM_OK(bind(fd, a.sa(), a.len));
  ASSERT_NE(local_addr(fd).port(), 0) << "UDP bind(port 0) left port 0";
}

// recvfrom bounded by a poll; returns the datagram, fills *from.
std::string recv_dgram(int fd, Addr* from = nullptr, size_t max = 65536) {
  std::string buf(max, '\0');
  Deadline d(kIoTimeoutMs);
  for (;;) {
    Addr a;
    a.len = sizeof a.ss;
    ssize_t r = recvfrom(fd, buf.data(), buf.size(), MSG_DONTWAIT, a.sa(), &a.len);
    if (r >= 0) {
      if (from) *from = a;
      buf.resize(static_cast<size_t>(r));
      return buf;
    }
    int e = errno;
    if (e != EAGAIN && e != EINTR) {
      ADD_FAILURE() << "recvfrom(fd " << fd << "): " << err(e);
      return "<error>";
    }
    if (d.expired()) {
      ADD_FAILURE() << "no datagram on fd " << fd << " within " << kIoTimeoutMs << " ms";
      return "<timeout>";
    }
    poll_fd(fd, POLLIN, d.left_ms());
  }
}

void sendto_ok(int fd, const std::string& s, const Addr& to) {
  ssize_t r = sendto(fd, s.data(), s.size(), 0, to.sa(), to.len);
  ASSERT_EQ(r, static_cast<ssize_t>(s.size())) << "sendto " << to << ": " << err(errno);
}

void check_sendto_recvfrom(int family) {
  Fd a, b;
  ASSERT_NO_FATAL_FAILURE(make_udp(&a, family));
  ASSERT_NO_FATAL_FAILURE(make_udp(&b, family));
  ASSERT_NO_FATAL_FAILURE(sendto_ok(a.get(), "dgram", local_addr(b.get())));
  Addr from;
  EXPECT_EQ(recv_dgram(b.get(), &from), "dgram");
  EXPECT_EQ(from, local_addr(a.get())) << "recvfrom() reported the wrong source";
  EXPECT_EQ(from.len, local_addr(a.get()).len) << "recvfrom() address length";
  ASSERT_NO_FATAL_FAILURE(sendto_ok(b.get(), "reply", from));
  EXPECT_EQ(recv_dgram(a.get()), "reply");
}

TEST(Udp, SendtoRecvfromV4) { check_sendto_recvfrom(AF_INET); }
TEST(Udp, SendtoRecvfromV6) { check_sendto_recvfrom(AF_INET6); }

TEST(Udp, DatagramBoundariesArePreserved) {
  Fd a, b;
  ASSERT_NO_FATAL_FAILURE(make_udp(&a));
  ASSERT_NO_FATAL_FAILURE(make_udp(&b));
  Addr to = local_addr(b.get());
  std::string d1(1, 'x'), d2(100, 'y'), d3(1400, 'z'), d0;
  for (auto* d : {&d1, &d2, &d0, &d3}) ASSERT_NO_FATAL_FAILURE(sendto_ok(a.get(), *d, to));
  EXPECT_EQ(recv_dgram(b.get()), d1) << "first datagram";
  EXPECT_EQ(recv_dgram(b.get()), d2) << "second datagram";
  EXPECT_EQ(recv_dgram(b.get()), d0) << "zero-length datagram must be delivered as such";
  EXPECT_EQ(recv_dgram(b.get()), d3) << "fourth datagram";
}

TEST(Udp, ConnectedUdpUsesDefaultPeerAndFiltersOtherSources) {
  Fd a, b, stranger;
  ASSERT_NO_FATAL_FAILURE(make_udp(&a));
  ASSERT_NO_FATAL_FAILURE(make_udp(&b));
  ASSERT_NO_FATAL_FAILURE(make_udp(&stranger));
  Addr aa = local_addr(a.get()), ba = local_addr(b.get());
  SEM_OK(connect(a.get(), ba.sa(), ba.len));
  SEM_OK(connect(b.get(), aa.sa(), aa.len));
  EXPECT_EQ(peer_addr(a.get()), ba) << "getpeername() of a connected UDP socket";
  // The stranger's datagram is sent first but must never be delivered to a.
  ASSERT_NO_FATAL_FAILURE(sendto_ok(stranger.get(), "intruder", aa));
  ASSERT_EQ(send(b.get(), "legit", 5, 0), 5) << err(errno);
  Addr from;
  EXPECT_EQ(recv_dgram(a.get(), &from), "legit")
      << "a connected UDP socket delivered a datagram from another source";
  EXPECT_EQ(from, ba);
  EXPECT_EQ(poll_fd(a.get(), POLLIN, kQuietMs), 0)
      << "a connected UDP socket has a queued datagram from a foreign source";
  ASSERT_EQ(send(a.get(), "back", 4, 0), 4) << "send() on connected UDP: " << err(errno);
  EXPECT_EQ(recv_dgram(b.get()), "back");
  // read()/write() work on a connected datagram socket.
  ASSERT_EQ(write(a.get(), "w", 1), 1) << err(errno);
  EXPECT_EQ(recv_dgram(b.get()), "w");
}

TEST(Udp, MsgTruncFlagReturnsRealLengthAndMsgFlagsReportsTruncation) {
  Fd a, b;
  ASSERT_NO_FATAL_FAILURE(make_udp(&a));
  ASSERT_NO_FATAL_FAILURE(make_udp(&b));
  Addr to = local_addr(b.get());
  std::string big(100, '\0');
  fill_pattern(4, 0, big.data(), big.size());
  ASSERT_NO_FATAL_FAILURE(sendto_ok(a.get(), big, to));
  ASSERT_NO_FATAL_FAILURE(sendto_ok(a.get(), big, to));
  ASSERT_NO_FATAL_FAILURE(sendto_ok(a.get(), "next", to));
  ASSERT_NO_FATAL_FAILURE(wait_readable(b.get()));
  char small[10];
  ssize_t r = recv(b.get(), small, sizeof small, MSG_TRUNC);
  EXPECT_EQ(r, 100) << "recv(MSG_TRUNC) must return the datagram's real length, got " << r
                    << (r < 0 ? " " + err(errno) : "");
  EXPECT_EQ(std::memcmp(small, big.data(), sizeof small), 0);
  // Without the flag: returns what fit; msg_flags has MSG_TRUNC; the rest is discarded.
  ASSERT_NO_FATAL_FAILURE(wait_readable(b.get()));
  iovec iov{small, sizeof small};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  r = recvmsg(b.get(), &mh, 0);
  EXPECT_EQ(r, 10) << "recvmsg() into 10 bytes of a 100-byte datagram";
  EXPECT_TRUE(mh.msg_flags & MSG_TRUNC) << "recvmsg() did not set MSG_TRUNC in msg_flags";
  EXPECT_EQ(recv_dgram(b.get()), "next") << "the truncated remainder was not discarded";
}

TEST(Udp, EmptyNonblockingSocketIsEagainAndFionreadIsNextDatagramSize) {
  Fd a, b;
  ASSERT_NO_FATAL_FAILURE(make_udp(&a, AF_INET, SOCK_NONBLOCK));
  ASSERT_NO_FATAL_FAILURE(make_udp(&b));
  char buf[16];
  SEM_EXPECT_ERRNO(recv(a.get(), buf, sizeof buf, 0), EAGAIN);
  SEM_EXPECT_ERRNO(recvfrom(b.get(), buf, sizeof buf, MSG_DONTWAIT, nullptr, nullptr), EAGAIN);
  int n = -1;
  SEM_OK(ioctl(b.get(), FIONREAD, &n));
  EXPECT_EQ(n, 0) << "FIONREAD on an empty UDP socket";
  Addr to = local_addr(b.get());
  ASSERT_NO_FATAL_FAILURE(sendto_ok(a.get(), std::string(7, 'a'), to));
  ASSERT_NO_FATAL_FAILURE(sendto_ok(a.get(), std::string(3, 'b'), to));
  ASSERT_NO_FATAL_FAILURE(wait_readable(b.get()));
  // Linux: FIONREAD on UDP is the size of the first queued datagram, not the total.
  Deadline d(kIoTimeoutMs);
  do {
    SEM_OK(ioctl(b.get(), FIONREAD, &n));
  } while (n != 7 && !d.expired());
  EXPECT_EQ(n, 7) << "FIONREAD on UDP must give the size of the next datagram";
  EXPECT_EQ(recv_dgram(b.get()), std::string(7, 'a'));
  EXPECT_EQ(recv_dgram(b.get()), std::string(3, 'b'));
  SEM_EXPECT_ERRNO(recv(b.get(), buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
}

TEST(Udp, ConnectedSocketToClosedPortGetsEconnrefused) {
  // A port with no UDP socket: bind one, note the port, close it.
  Addr dead;
  {
    Fd tmp;
    ASSERT_NO_FATAL_FAILURE(make_udp(&tmp));
    dead = local_addr(tmp.get());
  }
  Fd a;
  ASSERT_NO_FATAL_FAILURE(make_udp(&a));
  SEM_OK(connect(a.get(), dead.sa(), dead.len));
  // The ICMP port-unreachable answer surfaces as a pending error on the connected socket.
  int e = 0;
  Deadline d(kIoTimeoutMs);
  while (e == 0 && !d.expired()) {
    if (send(a.get(), "x", 1, 0) < 0) {
      e = errno;
      break;
    }
    short ev = poll_fd(a.get(), POLLIN, 50);
    if (ev & POLLERR) {
      char b;
      if (recv(a.get(), &b, 1, MSG_DONTWAIT) < 0) e = errno;
    }
  }
  EXPECT_EQ(e, ECONNREFUSED) << "connected UDP to a closed port: expected ECONNREFUSED, got "
                             << (e ? err(e) : std::string("nothing"));
}

}  // namespace
}  // namespace sem
