// Names (getsockname/getpeername, v4 and v6), socket options round trips and their visible
// effects (SO_REUSEADDR over TIME_WAIT, SO_REUSEPORT), fd identity (fstat, lowest free fd).
// Traps covered: T1 (fd identity, SO_TYPE/DOMAIN/PROTOCOL/ACCEPTCONN), T5 (ports, reuse),
// T20 (option coverage).
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sock_util.h"

namespace sem {
namespace {

int get_int(int fd, int level, int opt) {
  int v = -12345;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, opt, &v, &len) != 0) {
    ADD_FAILURE() << "getsockopt(level " << level << ", opt " << opt << "): " << err(errno);
    return -12345;
  }
  EXPECT_EQ(len, sizeof v) << "getsockopt(level " << level << ", opt " << opt
                           << ") returned length " << len;
  return v;
}

void set_int(int fd, int level, int opt, int v) {
  SEM_OK(setsockopt(fd, level, opt, &v, sizeof v));
}

void check_names(int family) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l, family));
  Addr la = local_addr(l.get());
  EXPECT_EQ(la.family(), family);
  EXPECT_TRUE(la.same_ip(loopback(family))) << "listener bound to " << la;
  EXPECT_EQ(la.len, family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6))
      << "getsockname() length for family " << family;

  int fd;
  SEM_SYS(fd, socket(family, SOCK_STREAM, 0));
  Fd cl(fd);
  Addr before = local_addr(fd);
  EXPECT_EQ(before.port(), 0) << "unbound socket reports port " << before.port();
  SEM_OK(connect(fd, la.sa(), la.len));
  Fd srv;
  ASSERT_NO_FATAL_FAILURE(accept_one(&srv, l.get()));

  Addr c_local = local_addr(cl.get()), c_peer = peer_addr(cl.get());
  Addr s_local = local_addr(srv.get()), s_peer = peer_addr(srv.get());
  EXPECT_NE(c_local.port(), 0) << "connect() did not bind an ephemeral port";
  EXPECT_TRUE(c_local.same_ip(loopback(family))) << "client bound to " << c_local;
  EXPECT_EQ(c_peer, la) << "client's getpeername() is not the listener's address";
  EXPECT_EQ(s_local, la) << "accepted socket's getsockname() is not the listener's address";
  EXPECT_EQ(s_peer, c_local) << "accepted socket's getpeername() is not the client's address";
  EXPECT_EQ(c_peer.len, la.len);

  // accept() also fills the address argument.
  Fd cl2;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl2, la));
  ASSERT_NO_FATAL_FAILURE(wait_readable(l.get()));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int a2;
  SEM_SYS(a2, accept(l.get(), reinterpret_cast<sockaddr*>(&ss), &len));
  Fd srv2(a2);
  Addr from;
  from.ss = ss;
  from.len = len;
  EXPECT_EQ(from, local_addr(cl2.get())) << "accept()'s address argument";
  EXPECT_EQ(len, la.len) << "accept()'s address length";
}

TEST(Names, GetsocknameGetpeernameV4) { check_names(AF_INET); }
TEST(Names, GetsocknameGetpeernameV6) { check_names(AF_INET6); }

// The names a socket reports are the kernel's, byte for byte, also where the platform knows
// them without asking its stack (a bind to an explicit IPv4 port, the address an IPv4 stream
// connected to): sin_zero cleared even when the caller passed garbage there.
TEST(Names, ExplicitBindAndConnectAddressesReadBackClean) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  const Addr la = local_addr(l.get());
  Addr free_port;  // a port nobody holds right now: bind port 0, read it, let it go
  {
    int t;
    SEM_SYS(t, socket(AF_INET, SOCK_STREAM, 0));
    Fd tmp(t);
    const Addr any = loopback(AF_INET);
    SEM_OK(bind(t, any.sa(), any.len));
    free_port = local_addr(t);
  }
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd cl(fd);
  set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  sockaddr_in want{};
  want.sin_family = AF_INET;
  want.sin_port = htons(free_port.port());
  want.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sockaddr_in dirty = want;
  std::memset(dirty.sin_zero, 0xAA, sizeof dirty.sin_zero);
  SEM_OK(bind(fd, reinterpret_cast<const sockaddr*>(&dirty), sizeof dirty));
  sockaddr_in got{};
  socklen_t len = sizeof got;
  SEM_OK(getsockname(fd, reinterpret_cast<sockaddr*>(&got), &len));
  EXPECT_EQ(len, sizeof got);
  EXPECT_EQ(std::memcmp(&got, &want, sizeof got), 0)
      << "getsockname() after bind(127.0.0.1:" << free_port.port() << ") is not that address";

  sockaddr_in to{};
  std::memcpy(&to, &la.ss, sizeof to);
  std::memset(to.sin_zero, 0xAA, sizeof to.sin_zero);
  SEM_OK(connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to));
  std::memset(to.sin_zero, 0, sizeof to.sin_zero);
  got = {};
  len = sizeof got;
  SEM_OK(getpeername(fd, reinterpret_cast<sockaddr*>(&got), &len));
  EXPECT_EQ(len, sizeof got);
  EXPECT_EQ(std::memcmp(&got, &to, sizeof got), 0) << "getpeername() after connect to " << la;
  got = {};
  len = sizeof got;
  SEM_OK(getsockname(fd, reinterpret_cast<sockaddr*>(&got), &len));
  EXPECT_EQ(std::memcmp(&got, &want, sizeof got), 0) << "getsockname() after connect";
}

TEST(Names, GetsocknameTruncatesButReportsFullLength) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  sockaddr_in sin{};
  socklen_t len = 4;  // room for family+port only
  SEM_OK(getsockname(l.get(), reinterpret_cast<sockaddr*>(&sin), &len));
  EXPECT_EQ(len, sizeof(sockaddr_in)) << "getsockname() must report the full address length";
  EXPECT_EQ(sin.sin_family, AF_INET);
  EXPECT_EQ(ntohs(sin.sin_port), local_addr(l.get()).port());
  EXPECT_EQ(sin.sin_addr.s_addr, 0u) << "getsockname() wrote past the given length";
}

TEST(Options, TcpNodelayRoundTrip) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  for (int fd : {c.client.get(), c.server.get()}) {
    EXPECT_EQ(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 0) << "TCP_NODELAY default";
    set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    EXPECT_EQ(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 1) << "TCP_NODELAY after set 1";
    set_int(fd, IPPROTO_TCP, TCP_NODELAY, 0);
    EXPECT_EQ(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 0) << "TCP_NODELAY after set 0";
  }
}

TEST(Options, SoReuseaddrRoundTripAndRebindOverTimeWait) {
  Fd l;
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
  l.reset(fd);
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_REUSEADDR), 0) << "SO_REUSEADDR default";
  set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  EXPECT_NE(get_int(fd, SOL_SOCKET, SO_REUSEADDR), 0) << "SO_REUSEADDR after set 1";
  Addr a = loopback(AF_INET);
  SEM_OK(bind(fd, a.sa(), a.len));
  SEM_OK(listen(fd, 8));
  Addr la = local_addr(fd);
  {
    Fd cl, srv;
    ASSERT_NO_FATAL_FAILURE(connect_to(&cl, la));
    ASSERT_NO_FATAL_FAILURE(accept_one(&srv, fd));
    // Server closes first: its side of the connection goes to TIME_WAIT on the listening port.
    srv.reset();
    ASSERT_NO_FATAL_FAILURE(expect_eof(cl.get()));
  }
  l.reset();
  // Without SO_REUSEADDR the port is still in use (TIME_WAIT).
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd plain(fd);
  SEM_EXPECT_ERRNO(bind(fd, la.sa(), la.len), EADDRINUSE);
  // With SO_REUSEADDR (the "quick restart" of every server) it binds and listens.
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd again(fd);
  set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  SEM_OK(bind(fd, la.sa(), la.len));
  SEM_OK(listen(fd, 8));
  Fd cl2, srv2;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl2, la));
  ASSERT_NO_FATAL_FAILURE(accept_one(&srv2, fd));
}

TEST(Options, SoReuseportTwoListenersShareAPort) {
  int a_fd, b_fd;
  SEM_SYS(a_fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd a(a_fd);
  EXPECT_EQ(get_int(a_fd, SOL_SOCKET, SO_REUSEPORT), 0) << "SO_REUSEPORT default";
  set_int(a_fd, SOL_SOCKET, SO_REUSEPORT, 1);
  EXPECT_NE(get_int(a_fd, SOL_SOCKET, SO_REUSEPORT), 0) << "SO_REUSEPORT after set 1";
  Addr lo = loopback(AF_INET);
  SEM_OK(bind(a_fd, lo.sa(), lo.len));
  SEM_OK(listen(a_fd, 64));
  Addr la = local_addr(a_fd);
  // Without SO_REUSEPORT a second bind to the same port fails.
  int c_fd;
  SEM_SYS(c_fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd c(c_fd);
  SEM_EXPECT_ERRNO(bind(c_fd, la.sa(), la.len), EADDRINUSE);
  SEM_SYS(b_fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd b(b_fd);
  set_int(b_fd, SOL_SOCKET, SO_REUSEPORT, 1);
  SEM_OK(bind(b_fd, la.sa(), la.len));
  SEM_OK(listen(b_fd, 64));
  // Every connection is accepted by exactly one of the two listeners.
  const int kConns = 16;
  std::vector<Fd> clients(kConns), accepted;
  for (auto& cl : clients) ASSERT_NO_FATAL_FAILURE(connect_to(&cl, la));
  Deadline d(kIoTimeoutMs);
  while (static_cast<int>(accepted.size()) < kConns && !d.expired()) {
    pollfd p[2] = {{a_fd, POLLIN, 0}, {b_fd, POLLIN, 0}};
    poll(p, 2, d.left_ms());
    for (auto& pf : p) {
      if (!(pf.revents & POLLIN)) continue;
      // The classic pattern: poll, then a blocking accept() that must not block.
      int lfd = pf.fd, n = -2, e = 0;
      BlockingCall call(
          [&] {
            n = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
            e = errno;
          },
          [&] { shutdown(lfd, SHUT_RDWR); });
      ASSERT_TRUE(call.wait_done())
          << "poll() reported POLLIN on SO_REUSEPORT listener " << (lfd == a_fd ? "A" : "B")
          << " but a blocking accept() on it then blocked for " << kIoTimeoutMs << " ms ("
          << accepted.size() << " of " << kConns << " connections accepted so far)";
      ASSERT_GE(n, 0) << "accept() after POLLIN: " << err(e);
      accepted.emplace_back(n);
    }
  }
  EXPECT_EQ(static_cast<int>(accepted.size()), kConns)
      << "connections to a SO_REUSEPORT group were lost";
}

TEST(Options, BufferSizesAreAtLeastWhatWasSet) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  for (int opt : {SO_RCVBUF, SO_SNDBUF}) {
    const char* name = opt == SO_RCVBUF ? "SO_RCVBUF" : "SO_SNDBUF";
    EXPECT_GT(get_int(c.client.get(), SOL_SOCKET, opt), 0) << name << " default";
    set_int(c.client.get(), SOL_SOCKET, opt, 65536);
    int v = get_int(c.client.get(), SOL_SOCKET, opt);
    EXPECT_GE(v, 65536) << name << " set to 65536 reads back as " << v
                        << " (Linux doubles it: 131072)";
  }
  // The connection still works with the new sizes.
  ASSERT_NO_FATAL_FAILURE(send_str(c.client.get(), "ok"));
  EXPECT_EQ(recv_str(c.server.get(), 2), "ok");
}

TEST(Options, FreshSocketBufferSizesAreTheKernelDefaults) {
  // Offloaded, a fresh socket's sizes come from its slot (no round trip to the TOE); they must
  // be the kernel's, here read from a socket the shim does not see (raw system call).
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
    Fd raw(static_cast<int>(::syscall(SYS_socket, AF_INET, type | SOCK_CLOEXEC, 0)));
    ASSERT_TRUE(fd.valid() && raw.valid());
    for (int opt : {SO_RCVBUF, SO_SNDBUF}) {
      EXPECT_EQ(get_int(fd.get(), SOL_SOCKET, opt), get_int(raw.get(), SOL_SOCKET, opt))
          << (opt == SO_RCVBUF ? "SO_RCVBUF" : "SO_SNDBUF") << " of a fresh "
          << (type == SOCK_STREAM ? "TCP" : "UDP") << " socket";
    }
    // After a set, both report what the kernel made of the value.
    set_int(fd.get(), SOL_SOCKET, SO_SNDBUF, 50000);
    set_int(raw.get(), SOL_SOCKET, SO_SNDBUF, 50000);
    EXPECT_EQ(get_int(fd.get(), SOL_SOCKET, SO_SNDBUF), get_int(raw.get(), SOL_SOCKET, SO_SNDBUF));
  }
}

TEST(Options, ReuseaddrAndNodelaySetBeforeConnectHold) {
  // setsockopt(SO_REUSEADDR/SO_REUSEPORT/SO_KEEPALIVE/TCP_NODELAY) is posted to the TOE without
  // waiting: the bind, connect and reads after it must see the options set, in order.
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l, AF_INET));
  const Addr la = local_addr(l.get());
  for (int round = 0; round < 20; ++round) {
    Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(c.valid());
    set_int(c.get(), SOL_SOCKET, SO_REUSEADDR, 1);
    set_int(c.get(), IPPROTO_TCP, TCP_NODELAY, 1);
    set_int(c.get(), SOL_SOCKET, SO_KEEPALIVE, 1);
    SEM_OK(connect(c.get(), la.sa(), la.len));
    EXPECT_NE(get_int(c.get(), SOL_SOCKET, SO_REUSEADDR), 0) << "round " << round;
    EXPECT_EQ(get_int(c.get(), IPPROTO_TCP, TCP_NODELAY), 1) << "round " << round;
    EXPECT_EQ(get_int(c.get(), SOL_SOCKET, SO_KEEPALIVE), 1) << "round " << round;
    Fd s;
    ASSERT_NO_FATAL_FAILURE(accept_one(&s, l.get()));
  }
}

TEST(Options, KeepaliveAndTcpKeepaliveTimersRoundTrip) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int fd = c.client.get();
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0) << "SO_KEEPALIVE default";
  set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1) << "SO_KEEPALIVE after set 1";
  set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, 77);
  set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, 13);
  set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, 4);
  EXPECT_EQ(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 77) << "TCP_KEEPIDLE";
  EXPECT_EQ(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 13) << "TCP_KEEPINTVL";
  EXPECT_EQ(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4) << "TCP_KEEPCNT";
  set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 0);
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0) << "SO_KEEPALIVE after set 0";
}

TEST(Options, SoLingerRoundTrip) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  linger lg{-1, -1};
  socklen_t len = sizeof lg;
  SEM_OK(getsockopt(c.client.get(), SOL_SOCKET, SO_LINGER, &lg, &len));
  EXPECT_EQ(len, sizeof(linger));
  EXPECT_EQ(lg.l_onoff, 0) << "SO_LINGER default l_onoff";
  EXPECT_EQ(lg.l_linger, 0) << "SO_LINGER default l_linger";
  linger set{1, 5};
  SEM_OK(setsockopt(c.client.get(), SOL_SOCKET, SO_LINGER, &set, sizeof set));
  SEM_OK(getsockopt(c.client.get(), SOL_SOCKET, SO_LINGER, &lg, &len));
  EXPECT_NE(lg.l_onoff, 0) << "SO_LINGER {1,5}: l_onoff";
  EXPECT_EQ(lg.l_linger, 5) << "SO_LINGER {1,5}: l_linger";
  set = {0, 0};
  SEM_OK(setsockopt(c.client.get(), SOL_SOCKET, SO_LINGER, &set, sizeof set));
  SEM_OK(getsockopt(c.client.get(), SOL_SOCKET, SO_LINGER, &lg, &len));
  EXPECT_EQ(lg.l_onoff, 0) << "SO_LINGER back to off";
}

void check_identity(int fd, int type, int domain, int protocol, const char* what) {
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_TYPE), type) << what << ": SO_TYPE";
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_DOMAIN), domain) << what << ": SO_DOMAIN";
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_PROTOCOL), protocol) << what << ": SO_PROTOCOL";
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0) << what << ": fstat: " << err(errno);
  EXPECT_TRUE(S_ISSOCK(st.st_mode)) << what << ": fstat() does not report S_IFSOCK";
}

TEST(Options, SoTypeSoDomainSoProtocolAndFstat) {
  for (int family : {AF_INET, AF_INET6}) {
    Fd l;
    ASSERT_NO_FATAL_FAILURE(make_listener(&l, family));
    Fd cl, srv;
    ASSERT_NO_FATAL_FAILURE(connect_to(&cl, local_addr(l.get())));
    ASSERT_NO_FATAL_FAILURE(accept_one(&srv, l.get()));
    std::string f = family == AF_INET ? "v4 " : "v6 ";
    check_identity(l.get(), SOCK_STREAM, family, IPPROTO_TCP, (f + "listener").c_str());
    check_identity(cl.get(), SOCK_STREAM, family, IPPROTO_TCP, (f + "client").c_str());
    check_identity(srv.get(), SOCK_STREAM, family, IPPROTO_TCP, (f + "accepted").c_str());
    int u;
    SEM_SYS(u, socket(family, SOCK_DGRAM, 0));
    Fd udp(u);
    check_identity(u, SOCK_DGRAM, family, IPPROTO_UDP, (f + "udp").c_str());
    // Type flags are not part of SO_TYPE.
    int nb;
    SEM_SYS(nb, socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    Fd nbs(nb);
    check_identity(nb, SOCK_STREAM, family, IPPROTO_TCP, (f + "SOCK_NONBLOCK|CLOEXEC").c_str());
  }
}

TEST(Options, SoAcceptconn) {
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd l(fd);
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_ACCEPTCONN), 0) << "fresh socket";
  Addr a = loopback(AF_INET);
  SEM_OK(bind(fd, a.sa(), a.len));
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_ACCEPTCONN), 0) << "bound, not listening";
  SEM_OK(listen(fd, 8));
  EXPECT_EQ(get_int(fd, SOL_SOCKET, SO_ACCEPTCONN), 1) << "listening socket";
  Fd cl, srv;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl, local_addr(fd)));
  ASSERT_NO_FATAL_FAILURE(accept_one(&srv, fd));
  EXPECT_EQ(get_int(cl.get(), SOL_SOCKET, SO_ACCEPTCONN), 0) << "connected client";
  EXPECT_EQ(get_int(srv.get(), SOL_SOCKET, SO_ACCEPTCONN), 0) << "accepted socket";
}

TEST(Options, SoErrorIsZeroOnAHealthySocket) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  EXPECT_EQ(get_int(c.client.get(), SOL_SOCKET, SO_ERROR), 0);
  EXPECT_EQ(get_int(c.server.get(), SOL_SOCKET, SO_ERROR), 0);
}

TEST(Options, IpTosAndTtlRoundTrip) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  set_int(c.client.get(), IPPROTO_IP, IP_TOS, 0x10);
  EXPECT_EQ(get_int(c.client.get(), IPPROTO_IP, IP_TOS), 0x10) << "IP_TOS";
  set_int(c.client.get(), IPPROTO_IP, IP_TTL, 33);
  EXPECT_EQ(get_int(c.client.get(), IPPROTO_IP, IP_TTL), 33) << "IP_TTL";
}

TEST(Options, TcpInfoReportsEstablished) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  tcp_info ti{};
  socklen_t len = sizeof ti;
  SEM_OK(getsockopt(c.client.get(), IPPROTO_TCP, TCP_INFO, &ti, &len));
  EXPECT_GT(len, 0u);
  EXPECT_EQ(ti.tcpi_state, TCP_ESTABLISHED) << "TCP_INFO tcpi_state of a connected socket";
}

TEST(Options, UnknownSolSocketOptionIsEnoprotoopt) {
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd s(fd);
  int v = 0;
  socklen_t len = sizeof v;
  SEM_EXPECT_ERRNO(getsockopt(fd, SOL_SOCKET, 9999, &v, &len), ENOPROTOOPT);
  SEM_EXPECT_ERRNO(setsockopt(fd, SOL_SOCKET, 9999, &v, sizeof v), ENOPROTOOPT);
}

TEST(Identity, SocketAndAcceptReturnTheLowestFreeFd) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  int fd;
  int want = lowest_free_fd();
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd s(fd);
  EXPECT_EQ(fd, want) << "socket() must return the lowest free fd";
  // Open a hole below a higher fd and check accept() fills it.
  int p[2];
  SEM_OK(pipe(p));
  Fd pr(p[0]), pw(p[1]);
  int hole = s.get();
  s.reset();
  Fd cl;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl, local_addr(l.get())));  // takes `hole`
  EXPECT_EQ(cl.get(), hole) << "socket() did not reuse the just-closed fd number";
  want = lowest_free_fd();
  Fd a;
  ASSERT_NO_FATAL_FAILURE(accept_one(&a, l.get()));
  EXPECT_EQ(a.get(), want) << "accept() must return the lowest free fd";
}

int count_open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n;
}

// A blocking read on `c` that has to wait: `a` answers from another thread a little later.
void waiting_read(int c, int a) {
  std::thread answer([a] {
    usleep(2000);
    (void)send(a, "x", 1, MSG_NOSIGNAL);
  });
  char b = 0;
  EXPECT_EQ(recv(c, &b, 1, 0), 1) << "waiting read: " << err(errno);
  answer.join();
  EXPECT_EQ(b, 'x');
}

// Connection after connection with reads that sleep in between (offloaded: the shim's waits,
// its per-thread wake fd, the placeholder pairs made and dropped): socket() and accept() keep
// returning the lowest free number with exactly the flags asked for, every socket works, and
// no fd is left behind per connection.
TEST(Identity, SocketsMadeAfterBlockingReadsKeepNumbersFlagsAndCount) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  const Addr to = local_addr(l.get());
  Fd prev_c, prev_a;
  int open_before = 0;
  for (int i = 0; i < 13; ++i) {
    // Round 0 warms up: offloaded, the shim's own per-thread wake fd appears there.
    if (i == 1) open_before = count_open_fds();
    const int flags = i % 2 == 1 ? SOCK_CLOEXEC | SOCK_NONBLOCK : 0;
    const int want = lowest_free_fd();
    int fd;
    SEM_SYS(fd, socket(AF_INET, SOCK_STREAM | flags, 0));
    Fd c(fd);
    EXPECT_EQ(fd, want) << "round " << i << ": socket() must return the lowest free fd";
    EXPECT_EQ((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, flags != 0) << "round " << i;
    EXPECT_EQ((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0, flags != 0) << "round " << i;
    if (flags != 0) SEM_OK(fcntl(fd, F_SETFL, 0));
    SEM_OK(connect(fd, to.sa(), to.len));
    ASSERT_TRUE(poll_fd(l.get(), POLLIN, kIoTimeoutMs) & POLLIN)
        << "round " << i << ": no connection to accept";
    if (prev_c.get() >= 0) {
      ASSERT_NO_FATAL_FAILURE(waiting_read(prev_c.get(), prev_a.get()));
    }
    const int want_a = lowest_free_fd();
    int afd;
    SEM_SYS(afd, accept4(l.get(), nullptr, nullptr, flags));
    Fd a(afd);
    EXPECT_EQ(afd, want_a) << "round " << i << ": accept() must return the lowest free fd";
    EXPECT_EQ((fcntl(afd, F_GETFD) & FD_CLOEXEC) != 0, flags != 0) << "round " << i;
    EXPECT_EQ((fcntl(afd, F_GETFL) & O_NONBLOCK) != 0, flags != 0) << "round " << i;
    if (flags != 0) SEM_OK(fcntl(afd, F_SETFL, 0));
    ASSERT_NO_FATAL_FAILURE(waiting_read(c.get(), a.get()));
    ASSERT_NO_FATAL_FAILURE(send_str(c.get(), "y"));
    EXPECT_EQ(recv_str(a.get(), 1), "y") << "round " << i;
    prev_c = std::move(c);  // read again, while the next round's connection waits in accept
    prev_a = std::move(a);
  }
  // Round 12's pair is still open in prev_c/prev_a, as round 0's was when counting.
  EXPECT_EQ(count_open_fds(), open_before) << "fds left behind by 12 connections";
}

}  // namespace
}  // namespace sem
