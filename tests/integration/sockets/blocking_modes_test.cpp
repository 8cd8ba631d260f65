// Blocking and non-blocking modes, EAGAIN, connect (blocking, non-blocking, refused).
// Traps covered: T6 (non-blocking connect, SO_ERROR read-and-clear), T7 (O_NONBLOCK is per open
// file description, set four ways; accepted sockets do not inherit it), T11 (SO_RCVTIMEO), T19.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "sock_util.h"

namespace sem {
namespace {

bool is_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK) != 0;
}

// A port on loopback with a bound but not listening TCP socket: a SYN to it is answered with RST,
// and the port cannot be taken by anyone else while `holder` is open.
void closed_port(Fd* holder, Addr* addr, int family = AF_INET) {
  int fd;
  SEM_SYS(fd, socket(family, SOCK_STREAM, 0));
  holder->reset(fd);
  Addr a = loopback(family);
  SEM_OK(bind(fd, a.sa(), a.len));
  *addr = local_addr(fd);
  ASSERT_NE(addr->port(), 0);
}

TEST(Blocking, RecvWaitsForData) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ssize_t got = -2;
  int e = 0;
  char buf[16] = {};
  BlockingCall call([&] {
    got = recv(c.client.get(), buf, sizeof buf, 0);
    e = errno;
  });
  ASSERT_TRUE(call.wait_blocked()) << "the recv thread never went to sleep";
  EXPECT_FALSE(call.done()) << "blocking recv() on an empty socket returned " << got << " ("
                            << err(e) << ") before any data was sent";
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "late"));
  ASSERT_TRUE(call.wait_done()) << "blocking recv() did not return after the peer sent 4 bytes";
  ASSERT_EQ(got, 4) << "blocking recv() returned " << got << ": " << err(e);
  EXPECT_EQ(std::string(buf, 4), "late");
}

TEST(Blocking, AcceptWaitsForConnection) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  int accepted = -2, e = 0;
  BlockingCall call([&] {
    accepted = accept(l.get(), nullptr, nullptr);
    e = errno;
  });
  ASSERT_TRUE(call.wait_blocked());
  EXPECT_FALSE(call.done()) << "blocking accept() returned " << accepted << " (" << err(e)
                            << ") with no client";
  Fd cl;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl, local_addr(l.get())));
  ASSERT_TRUE(call.wait_done()) << "blocking accept() did not return after a client connected";
  ASSERT_GE(accepted, 0) << "accept() failed: " << err(e);
  Fd a(accepted);
  EXPECT_EQ(peer_addr(a.get()), local_addr(cl.get()))
      << "accepted socket's peer is not the connecting socket";
}

TEST(Blocking, SendBlocksUntilPeerReadsThenSendsEverything) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  // Far more than loopback socket buffers (or any sane send credit) can absorb.
  const size_t kTotal = 32u << 20;
  std::vector<char> data(kTotal);
  fill_pattern(7, 0, data.data(), data.size());
  ssize_t sent = -2;
  int e = 0;
  BlockingCall call(
      [&] {
        sent = send(c.client.get(), data.data(), data.size(), MSG_NOSIGNAL);
        e = errno;
      },
      [&] { shutdown(c.client.get(), SHUT_RDWR); });
  ASSERT_TRUE(call.wait_blocked());
  std::vector<char> got(kTotal);
  recv_exact(c.server.get(), got.data(), got.size());
  if (HasFatalFailure()) {
    // Tell a stalled sender from lost read readiness.
    int inq = -1;
    ioctl(c.server.get(), FIONREAD, &inq);
    FAIL() << "stalled: sender " << (call.done() ? "returned" : "still blocked in send()")
           << ", receiver FIONREAD=" << inq
           << ", receiver revents(POLLIN)=" << poll_fd(c.server.get(), POLLIN, 0);
  }
  ASSERT_TRUE(call.wait_done()) << "blocking send() did not return after the peer read all";
  EXPECT_EQ(sent, static_cast<ssize_t>(kTotal))
      << "a blocking send() must transfer everything (no signal arrived): got " << sent << " ("
      << err(e) << ")";
  EXPECT_TRUE(got == data) << "received bytes differ from sent bytes";
}

TEST(Blocking, SoRcvtimeoTurnsBlockingRecvIntoEagain) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  timeval tv{0, 200 * 1000};
  SEM_OK(setsockopt(c.client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
  timeval back{};
  socklen_t len = sizeof back;
  SEM_OK(getsockopt(c.client.get(), SOL_SOCKET, SO_RCVTIMEO, &back, &len));
  EXPECT_EQ(back.tv_sec * 1000000 + back.tv_usec, 200000) << "SO_RCVTIMEO did not round-trip";
  char b;
  SEM_EXPECT_ERRNO(recv(c.client.get(), &b, 1, 0), EAGAIN);
}

TEST(NonBlocking, SockNonblockAtSocketCreation) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  Fd s(fd);
  EXPECT_TRUE(is_nonblocking(fd)) << "socket(SOCK_NONBLOCK): F_GETFL lacks O_NONBLOCK";
  Addr a = local_addr(l.get());
  int r = connect(fd, a.sa(), a.len);
  int e = errno;
  ASSERT_TRUE(r == 0 || e == EINPROGRESS)
      << "non-blocking connect() to a listener: expected 0 or EINPROGRESS, got " << err(e);
  ASSERT_NO_FATAL_FAILURE(wait_writable(fd));
  Fd srv;
  ASSERT_NO_FATAL_FAILURE(accept_one(&srv, l.get()));
  char b;
  SEM_EXPECT_ERRNO(recv(fd, &b, 1, 0), EAGAIN);
  EXPECT_TRUE(is_nonblocking(fd)) << "O_NONBLOCK lost after connect";
}

TEST(NonBlocking, FcntlONonblockSetAndClear) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int fd = c.client.get();
  EXPECT_FALSE(is_nonblocking(fd)) << "a fresh socket must be blocking";
  int fl = fcntl(fd, F_GETFL);
  SEM_OK(fcntl(fd, F_SETFL, fl | O_NONBLOCK));
  EXPECT_TRUE(is_nonblocking(fd)) << "F_SETFL O_NONBLOCK not visible in F_GETFL";
  char b;
  SEM_EXPECT_ERRNO(recv(fd, &b, 1, 0), EAGAIN);
  SEM_EXPECT_ERRNO(accept(fd, nullptr, nullptr), EINVAL);  // not a listener
  SEM_OK(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK));
  EXPECT_FALSE(is_nonblocking(fd)) << "clearing O_NONBLOCK not visible in F_GETFL";
  // Blocking again: a recv waits for the data.
  ssize_t got = -2;
  BlockingCall call([&] { got = recv(fd, &b, 1, 0); });
  ASSERT_TRUE(call.wait_blocked());
  EXPECT_FALSE(call.done()) << "recv() returned " << got
                            << " on an empty socket after O_NONBLOCK was cleared";
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "x"));
  ASSERT_TRUE(call.wait_done());
  EXPECT_EQ(got, 1);
}

TEST(NonBlocking, FionbioSetAndClear) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int fd = c.client.get();
  int on = 1;
  SEM_OK(ioctl(fd, FIONBIO, &on));
  EXPECT_TRUE(is_nonblocking(fd)) << "ioctl(FIONBIO, 1) not visible in F_GETFL";
  char b;
  SEM_EXPECT_ERRNO(recv(fd, &b, 1, 0), EAGAIN);
  int off = 0;
  SEM_OK(ioctl(fd, FIONBIO, &off));
  EXPECT_FALSE(is_nonblocking(fd)) << "ioctl(FIONBIO, 0) not visible in F_GETFL";
}

TEST(NonBlocking, MsgDontwaitOnBlockingSocket) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int fd = c.client.get();
  char b[8];
  SEM_EXPECT_ERRNO(recv(fd, b, sizeof b, MSG_DONTWAIT), EAGAIN);
  EXPECT_FALSE(is_nonblocking(fd)) << "MSG_DONTWAIT must not change the file's O_NONBLOCK";
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "abc"));
  ASSERT_NO_FATAL_FAILURE(wait_readable(fd));
  EXPECT_EQ(recv_str(fd, 3), "abc");
  SEM_EXPECT_ERRNO(recv(fd, b, sizeof b, MSG_DONTWAIT), EAGAIN);
}

TEST(NonBlocking, SendEagainWhenFullThenWritableAfterPeerDrains) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int fd = c.client.get();
  int on = 1;
  SEM_OK(ioctl(fd, FIONBIO, &on));
  std::vector<char> chunk(64 * 1024);
  size_t total = 0;
  const size_t kLimit = 1u << 30;
  int e = 0;
  for (;;) {
    fill_pattern(11, total, chunk.data(), chunk.size());
    ssize_t r = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (r > 0) {
      total += static_cast<size_t>(r);
      ASSERT_LT(total, kLimit) << "non-blocking send() accepted " << total
                               << " bytes without EAGAIN while the peer never read";
      continue;
    }
    e = errno;
    break;
  }
  ASSERT_EQ(e, EAGAIN) << "non-blocking send() into a full socket: expected EAGAIN, got " << err(e)
                       << " after " << total << " bytes";
  EXPECT_EQ(poll_fd(fd, POLLOUT, 0) & POLLOUT, 0)
      << "poll() reports POLLOUT right after send() returned EAGAIN";
  // Drain everything on the peer and check it byte for byte.
  std::vector<char> got(total), want(total);
  ASSERT_NO_FATAL_FAILURE(recv_exact(c.server.get(), got.data(), got.size()));
  fill_pattern(11, 0, want.data(), want.size());
  EXPECT_TRUE(got == want) << "data corrupted across EAGAIN";
  ASSERT_NO_FATAL_FAILURE(wait_writable(fd));
  EXPECT_GT(send(fd, "z", 1, MSG_NOSIGNAL), 0) << "send() after POLLOUT failed: " << err(errno);
}

TEST(NonBlocking, AcceptOnEmptyListenerIsEagain) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l, AF_INET, SOCK_NONBLOCK));
  SEM_EXPECT_ERRNO(accept(l.get(), nullptr, nullptr), EAGAIN);
  EXPECT_EQ(poll_fd(l.get(), POLLIN, 0), 0) << "an empty listener polls readable";
}

TEST(NonBlocking, AcceptedSocketDoesNotInheritONonblock) {
  // Linux: accept() does not copy O_NONBLOCK from the listener (unlike BSD).
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l, AF_INET, SOCK_NONBLOCK));
  Fd cl, a;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl, local_addr(l.get())));
  ASSERT_NO_FATAL_FAILURE(accept_one(&a, l.get(), 0));
  EXPECT_FALSE(is_nonblocking(a.get()))
      << "accept() on a non-blocking listener returned a non-blocking socket (Linux does not)";
}

TEST(NonBlocking, Accept4FlagsVisibleViaFcntl) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  Fd c1, c2, a1, a2;
  ASSERT_NO_FATAL_FAILURE(connect_to(&c1, local_addr(l.get())));
  ASSERT_NO_FATAL_FAILURE(accept_one(&a1, l.get(), SOCK_NONBLOCK | SOCK_CLOEXEC));
  EXPECT_TRUE(is_nonblocking(a1.get())) << "accept4(SOCK_NONBLOCK): F_GETFL lacks O_NONBLOCK";
  EXPECT_TRUE(fcntl(a1.get(), F_GETFD) & FD_CLOEXEC)
      << "accept4(SOCK_CLOEXEC): F_GETFD lacks FD_CLOEXEC";
  ASSERT_NO_FATAL_FAILURE(connect_to(&c2, local_addr(l.get())));
  ASSERT_NO_FATAL_FAILURE(accept_one(&a2, l.get(), 0));
  EXPECT_FALSE(is_nonblocking(a2.get())) << "accept4(0) returned a non-blocking socket";
  EXPECT_FALSE(fcntl(a2.get(), F_GETFD) & FD_CLOEXEC) << "accept4(0) returned a CLOEXEC fd";
  // The non-blocking one really is non-blocking.
  char b;
  SEM_EXPECT_ERRNO(recv(a1.get(), &b, 1, 0), EAGAIN);
}

TEST(NonBlocking, ONonblockIsSharedByDupedFds) {
  // O_NONBLOCK belongs to the open file description, FD_CLOEXEC to the fd.
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int d;
  SEM_SYS(d, dup(c.client.get()));
  Fd dupfd(d);
  int fl = fcntl(c.client.get(), F_GETFL);
  SEM_OK(fcntl(c.client.get(), F_SETFL, fl | O_NONBLOCK));
  EXPECT_TRUE(is_nonblocking(d)) << "O_NONBLOCK set on the original is not visible on its dup";
  char b;
  SEM_EXPECT_ERRNO(recv(d, &b, 1, 0), EAGAIN);
  SEM_OK(fcntl(d, F_SETFD, FD_CLOEXEC));
  EXPECT_FALSE(fcntl(c.client.get(), F_GETFD) & FD_CLOEXEC)
      << "FD_CLOEXEC set on a dup leaked to the original fd";
}

TEST(Connect, NonblockingEinprogressThenPolloutAndSoErrorZero) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  Fd s(fd);
  Addr a = local_addr(l.get());
  int r = connect(fd, a.sa(), a.len);
  int e = errno;
  ASSERT_TRUE(r == 0 || e == EINPROGRESS)
      << "non-blocking connect(): expected EINPROGRESS (or 0), got " << err(e);
  short ev = poll_fd(fd, POLLOUT, kIoTimeoutMs);
  ASSERT_TRUE(ev & POLLOUT) << "connecting socket never became writable (revents=" << ev << ")";
  EXPECT_FALSE(ev & (POLLERR | POLLHUP)) << "successful connect reported POLLERR/POLLHUP";
  int so = -1;
  socklen_t len = sizeof so;
  SEM_OK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len));
  EXPECT_EQ(so, 0) << "SO_ERROR after successful connect: " << err(so);
  // Linux: the first connect() after an EINPROGRESS one completed returns 0 (it "collects" the
  // completion); every later one is EISCONN. Accept 0 or EISCONN for the first.
  errno = 0;
  int again = connect(fd, a.sa(), a.len);
  int again_e = errno;
  EXPECT_TRUE(again == 0 || again_e == EISCONN)
      << "connect() on a connected socket: expected 0 (once) or EISCONN, got " << err(again_e);
  SEM_EXPECT_ERRNO(connect(fd, a.sa(), a.len), EISCONN);
  Fd srv;
  ASSERT_NO_FATAL_FAILURE(accept_one(&srv, l.get()));
  ASSERT_NO_FATAL_FAILURE(send_str(fd, "hi"));
  EXPECT_EQ(recv_str(srv.get(), 2), "hi");
}

TEST(Connect, RefusedBlocking) {
  Fd holder;
  Addr a;
  ASSERT_NO_FATAL_FAILURE(closed_port(&holder, &a));
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd s(fd);
  SEM_EXPECT_ERRNO(connect(fd, a.sa(), a.len), ECONNREFUSED);
  int so = -1;
  socklen_t len = sizeof so;
  SEM_OK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len));
  EXPECT_EQ(so, 0) << "SO_ERROR must be consumed by the failing blocking connect(), got "
                   << err(so);
}

TEST(Connect, RefusedNonblockingReportedViaPollAndSoErrorReadAndClear) {
  Fd holder;
  Addr a;
  ASSERT_NO_FATAL_FAILURE(closed_port(&holder, &a));
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  Fd s(fd);
  int r = connect(fd, a.sa(), a.len);
  int e = errno;
  ASSERT_EQ(r, -1) << "non-blocking connect() to a closed port succeeded";
  if (e == ECONNREFUSED) return;  // allowed: refused synchronously
  ASSERT_EQ(e, EINPROGRESS) << "non-blocking connect() to a closed port: " << err(e);
  short ev = poll_fd(fd, POLLOUT, kIoTimeoutMs);
  ASSERT_NE(ev, 0) << "refused non-blocking connect never reported readiness";
  EXPECT_TRUE(ev & POLLERR) << "refused connect: poll revents=" << ev << " lacks POLLERR";
  int so = -1;
  socklen_t len = sizeof so;
  SEM_OK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len));
  EXPECT_EQ(so, ECONNREFUSED) << "SO_ERROR after refused connect: " << err(so);
  so = -1;
  SEM_OK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len));
  EXPECT_EQ(so, 0) << "SO_ERROR is read-and-clear: the second read must be 0, got " << err(so);
}

}  // namespace
}  // namespace sem
