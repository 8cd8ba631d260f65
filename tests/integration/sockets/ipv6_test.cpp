// IPv6 TCP over ::1 (data, non-blocking connect, refused), IPV6_V6ONLY, and a dual-stack
// listener accepting an IPv4 client as an IPv4-mapped peer.
// Traps covered: T28 (IPv6 and dual stack). v6 names are in names_options_test.cpp
// (Names.GetsocknameGetpeernameV6), v6 UDP in udp_test.cpp.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sock_util.h"

namespace sem {
namespace {

TEST(Ipv6, TcpBulkBothWaysOverLoopback) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c, AF_INET6));
  EXPECT_EQ(local_addr(c.client.get()).family(), AF_INET6);
  const size_t kSize = 2u << 20;
  std::vector<char> up(kSize), down(kSize), got_up(kSize), got_down(kSize);
  fill_pattern(61, 0, up.data(), kSize);
  fill_pattern(62, 0, down.data(), kSize);
  std::thread t1([&] { send_all(c.client.get(), up.data(), kSize); });
  std::thread t2([&] { send_all(c.server.get(), down.data(), kSize); });
  std::thread t3([&] { recv_exact(c.server.get(), got_up.data(), kSize); });
  recv_exact(c.client.get(), got_down.data(), kSize);
  t1.join();
  t2.join();
  t3.join();
  EXPECT_TRUE(got_up == up) << "v6 client->server data corrupted";
  EXPECT_TRUE(got_down == down) << "v6 server->client data corrupted";
  c.client.reset();
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.server.get()));
}

TEST(Ipv6, NonblockingConnectAndRefused) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l, AF_INET6));
  int fd;
  SEM_SYS(fd, socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0));
  Fd s(fd);
  Addr a = local_addr(l.get());
  int r = connect(fd, a.sa(), a.len);
  ASSERT_TRUE(r == 0 || errno == EINPROGRESS) << "v6 non-blocking connect: " << err(errno);
  ASSERT_NO_FATAL_FAILURE(wait_writable(fd));
  int so = -1;
  socklen_t len = sizeof so;
  SEM_OK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len));
  EXPECT_EQ(so, 0) << err(so);

  // Refused: a bound, non-listening v6 port.
  int h;
  SEM_SYS(h, socket(AF_INET6, SOCK_STREAM, 0));
  Fd holder(h);
  Addr lo = loopback(AF_INET6);
  SEM_OK(bind(h, lo.sa(), lo.len));
  Addr dead = local_addr(h);
  int c2;
  SEM_SYS(c2, socket(AF_INET6, SOCK_STREAM, 0));
  Fd cs(c2);
  SEM_EXPECT_ERRNO(connect(c2, dead.sa(), dead.len), ECONNREFUSED);
}

TEST(Ipv6, V6onlyRoundTrip) {
  int fd;
  SEM_SYS(fd, socket(AF_INET6, SOCK_STREAM, 0));
  Fd s(fd);
  int v = 1;
  SEM_OK(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v));
  int back = -1;
  socklen_t len = sizeof back;
  SEM_OK(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &back, &len));
  EXPECT_EQ(back, 1) << "IPV6_V6ONLY after set 1";
  v = 0;
  SEM_OK(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v));
  SEM_OK(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &back, &len));
  EXPECT_EQ(back, 0) << "IPV6_V6ONLY after set 0";
}

TEST(Ipv6, DualStackListenerSeesIpv4ClientAsMappedAddress) {
  // An AF_INET6 socket with IPV6_V6ONLY=0 bound to ::ffff:127.0.0.1 accepts IPv4 clients of
  // 127.0.0.1 (nginx, Java and Go use dual-stack sockets). Stays on loopback.
  int fd;
  SEM_SYS(fd, socket(AF_INET6, SOCK_STREAM, 0));
  Fd l(fd);
  int off = 0;
  SEM_OK(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off));
  Addr mapped;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&mapped.ss);
  sin6->sin6_family = AF_INET6;
  ASSERT_EQ(inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6->sin6_addr), 1);
  mapped.len = sizeof(sockaddr_in6);
  SEM_OK(bind(fd, mapped.sa(), mapped.len));
  SEM_OK(listen(fd, 8));
  uint16_t port = local_addr(fd).port();
  Fd cl;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl, loopback(AF_INET, port)));
  Fd a;
  ASSERT_NO_FATAL_FAILURE(accept_one(&a, fd));
  Addr peer = peer_addr(a.get());
  ASSERT_EQ(peer.family(), AF_INET6) << "accepted peer on a dual-stack socket: " << peer;
  char txt[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&peer.ss)->sin6_addr, txt, sizeof txt);
  EXPECT_EQ(std::string(txt), "::ffff:127.0.0.1") << "IPv4 client not shown as v4-mapped";
  EXPECT_EQ(peer.port(), local_addr(cl.get()).port());
  ASSERT_NO_FATAL_FAILURE(send_str(cl.get(), "v4->v6"));
  EXPECT_EQ(recv_str(a.get(), 6), "v4->v6");
}

}  // namespace
}  // namespace sem
