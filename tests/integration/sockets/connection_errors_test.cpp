// Connection errors and teardown: ECONNRESET (SO_LINGER{1,0}, unread data at close), EPIPE and
// SIGPIPE (MSG_NOSIGNAL), shutdown() half-close in both directions, sticky EOF, ENOTCONN.
// Traps covered: T17 (close semantics), T18 (SIGPIPE on the calling thread), T19 (EOF/errors).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>

#include "sock_util.h"

namespace sem {
namespace {

void close_with_reset(Fd* fd) {
  linger lg{1, 0};
  SEM_OK(setsockopt(fd->get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
  fd->reset();
}

// Waits until the reset is visible: fd polls ready (on Linux POLLIN|POLLERR|POLLHUP at once).
// Deliberately lenient about which flags: the exact revents are checked in
// ConnErrors.ResetByPeerLingerZeroGivesEconnresetThenEof only, so the other reset tests report
// their own subject (SO_ERROR, send errno) rather than the same poll-flag problem.
void wait_reset_visible(int fd) {
  short ev = poll_fd(fd, POLLIN, kIoTimeoutMs);
  ASSERT_NE(ev, 0) << "fd " << fd << " never became ready after the peer reset the connection";
}

TEST(ConnErrors, ResetByPeerLingerZeroGivesEconnresetThenEof) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ASSERT_NO_FATAL_FAILURE(close_with_reset(&c.server));
  ASSERT_NO_FATAL_FAILURE(wait_reset_visible(c.client.get()));
  short ev = poll_fd(c.client.get(), POLLIN | POLLOUT | POLLRDHUP, 0);
  EXPECT_TRUE(ev & POLLERR) << "after RST: revents=" << ev << " lacks POLLERR";
  EXPECT_TRUE(ev & POLLHUP) << "after RST: revents=" << ev << " lacks POLLHUP";
  char b[4];
  SEM_EXPECT_ERRNO(recv(c.client.get(), b, sizeof b, MSG_DONTWAIT), ECONNRESET);
  // Linux reports the reset once; afterwards the socket reads as closed (EOF).
  EXPECT_EQ(recv(c.client.get(), b, sizeof b, MSG_DONTWAIT), 0)
      << "second recv() after ECONNRESET: " << err(errno);
  SEM_EXPECT_ERRNO(send(c.client.get(), "x", 1, MSG_NOSIGNAL), EPIPE);
}

TEST(ConnErrors, ResetWakesBlockedRecvWithEconnreset) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ssize_t r = -2;
  int e = 0;
  char b[4];
  BlockingCall call([&] {
    r = recv(c.client.get(), b, sizeof b, 0);
    e = errno;
  });
  ASSERT_TRUE(call.wait_blocked());
  ASSERT_NO_FATAL_FAILURE(close_with_reset(&c.server));
  ASSERT_TRUE(call.wait_done()) << "blocked recv() did not return after the peer's RST";
  EXPECT_EQ(r, -1) << "blocked recv() after RST returned " << r;
  EXPECT_EQ(e, ECONNRESET) << "blocked recv() after RST: " << err(e);
}

TEST(ConnErrors, SoErrorHoldsEconnresetAndIsReadAndClear) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ASSERT_NO_FATAL_FAILURE(close_with_reset(&c.server));
  ASSERT_NO_FATAL_FAILURE(wait_reset_visible(c.client.get()));
  int so = -1;
  socklen_t len = sizeof so;
  SEM_OK(getsockopt(c.client.get(), SOL_SOCKET, SO_ERROR, &so, &len));
  EXPECT_EQ(so, ECONNRESET) << "SO_ERROR after RST: " << err(so);
  SEM_OK(getsockopt(c.client.get(), SOL_SOCKET, SO_ERROR, &so, &len));
  EXPECT_EQ(so, 0) << "SO_ERROR is read-and-clear: second read gave " << err(so);
  char b;
  EXPECT_EQ(recv(c.client.get(), &b, 1, MSG_DONTWAIT), 0)
      << "recv() after SO_ERROR consumed the reset: " << err(errno);
}

TEST(ConnErrors, CloseWithUnreadDataSendsReset) {
  // Linux: closing a socket whose receive queue still holds data sends RST, not FIN.
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ASSERT_NO_FATAL_FAILURE(send_str(c.client.get(), "never read"));
  // Make sure the data reached the server before it closes.
  ASSERT_NO_FATAL_FAILURE(wait_readable(c.server.get()));
  int n = 0;
  Deadline d(kIoTimeoutMs);
  while (n < 10 && !d.expired()) {
    char tmp[16];
    ssize_t p = recv(c.server.get(), tmp, sizeof tmp, MSG_PEEK | MSG_DONTWAIT);
    n = p > 0 ? static_cast<int>(p) : 0;
    if (n < 10) poll_fd(c.server.get(), POLLIN, 10);
  }
  ASSERT_EQ(n, 10) << "data never fully arrived at the server";
  c.server.reset();
  ASSERT_NO_FATAL_FAILURE(wait_reset_visible(c.client.get()));
  char b;
  SEM_EXPECT_ERRNO(recv(c.client.get(), &b, 1, MSG_DONTWAIT), ECONNRESET);
}

std::atomic<int> g_sigpipes{0};
std::atomic<pid_t> g_sigpipe_tid{0};
void on_sigpipe(int) {
  g_sigpipes.fetch_add(1);
  g_sigpipe_tid.store(gettid());
}

// Installs a counting SIGPIPE handler for the scope, restores the old disposition after.
class SigpipeCounter {
 public:
  SigpipeCounter() {
    g_sigpipes = 0;
    g_sigpipe_tid = 0;
    struct sigaction sa {};
    sa.sa_handler = on_sigpipe;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, &old_);
  }
  ~SigpipeCounter() { sigaction(SIGPIPE, &old_, nullptr); }
  SigpipeCounter(const SigpipeCounter&) = delete;
  SigpipeCounter& operator=(const SigpipeCounter&) = delete;

 private:
  struct sigaction old_ {};
};

TEST(ConnErrors, EpipeRaisesSigpipeOnCallingThreadUnlessMsgNosignal) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  SEM_OK(shutdown(c.client.get(), SHUT_WR));
  SigpipeCounter counter;
  SEM_EXPECT_ERRNO(send(c.client.get(), "x", 1, 0), EPIPE);
  EXPECT_EQ(g_sigpipes.load(), 1) << "send() without MSG_NOSIGNAL returned EPIPE but raised "
                                  << g_sigpipes.load() << " SIGPIPE(s), expected 1";
  EXPECT_EQ(g_sigpipe_tid.load(), gettid())
      << "SIGPIPE was handled by another thread, not the thread that called send()";
  SEM_EXPECT_ERRNO(send(c.client.get(), "x", 1, MSG_NOSIGNAL), EPIPE);
  EXPECT_EQ(g_sigpipes.load(), 1) << "send(MSG_NOSIGNAL) raised SIGPIPE";
  SEM_EXPECT_ERRNO(write(c.client.get(), "x", 1), EPIPE);
  EXPECT_EQ(g_sigpipes.load(), 2) << "write() on a shut-down socket must raise SIGPIPE";
  msghdr mh{};
  iovec iov{const_cast<char*>("x"), 1};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  SEM_EXPECT_ERRNO(sendmsg(c.client.get(), &mh, MSG_NOSIGNAL), EPIPE);
  EXPECT_EQ(g_sigpipes.load(), 2) << "sendmsg(MSG_NOSIGNAL) raised SIGPIPE";
}

TEST(ConnErrors, SendAfterPeerResetFailsWithEconnresetOrEpipe) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ASSERT_NO_FATAL_FAILURE(close_with_reset(&c.server));
  ASSERT_NO_FATAL_FAILURE(wait_reset_visible(c.client.get()));
  errno = 0;
  ssize_t r = send(c.client.get(), "x", 1, MSG_NOSIGNAL);
  int e = errno;
  EXPECT_EQ(r, -1) << "send() after the peer reset succeeded";
  // Linux: the pending error is reported first (ECONNRESET), then EPIPE forever.
  EXPECT_EQ(e, ECONNRESET) << "first send() after RST: " << err(e);
  SEM_EXPECT_ERRNO(send(c.client.get(), "x", 1, MSG_NOSIGNAL), EPIPE);
}

TEST(Shutdown, ShutWrPeerReadsEofAndCanStillSendBack) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ASSERT_NO_FATAL_FAILURE(send_str(c.client.get(), "request"));
  SEM_OK(shutdown(c.client.get(), SHUT_WR));
  EXPECT_EQ(recv_str(c.server.get(), 7), "request");
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.server.get()));
  short ev = poll_fd(c.server.get(), POLLIN | POLLRDHUP, 0);
  EXPECT_TRUE(ev & POLLIN) << "EOF must poll readable, revents=" << ev;
  EXPECT_TRUE(ev & POLLRDHUP) << "peer's SHUT_WR must set POLLRDHUP, revents=" << ev;
  EXPECT_FALSE(ev & POLLHUP) << "half-closed connection must not report POLLHUP, revents=" << ev;
  // The other direction still works.
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "response"));
  EXPECT_EQ(recv_str(c.client.get(), 8), "response");
  c.server.reset();
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.client.get()));
}

TEST(Shutdown, ShutWrFromAcceptedSideToo) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "greeting"));
  SEM_OK(shutdown(c.server.get(), SHUT_WR));
  EXPECT_EQ(recv_str(c.client.get(), 8), "greeting");
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.client.get()));
  ASSERT_NO_FATAL_FAILURE(send_str(c.client.get(), "reply"));
  EXPECT_EQ(recv_str(c.server.get(), 5), "reply");
  // After both directions are shut, each side sees EOF.
  SEM_OK(shutdown(c.client.get(), SHUT_WR));
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.server.get()));
}

TEST(Shutdown, ShutRdwrGivesPeerEofAndLocalEpipe) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  SEM_OK(shutdown(c.client.get(), SHUT_RDWR));
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.server.get()));
  char b;
  EXPECT_EQ(recv(c.client.get(), &b, 1, MSG_DONTWAIT), 0)
      << "recv() after own SHUT_RDWR must return 0: " << err(errno);
  SEM_EXPECT_ERRNO(send(c.client.get(), "x", 1, MSG_NOSIGNAL), EPIPE);
}

TEST(Eof, ReadAfterEofReturnsZeroEveryTime) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  c.server.reset();
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.client.get()));
  char b[8];
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(recv(c.client.get(), b, sizeof b, 0), 0)
        << "blocking recv() #" << i << " after EOF: " << err(errno);
    EXPECT_EQ(read(c.client.get(), b, sizeof b), 0)
        << "read() #" << i << " after EOF: " << err(errno);
  }
  EXPECT_TRUE(poll_fd(c.client.get(), POLLIN, 0) & POLLIN) << "EOF must stay readable";
}

TEST(ConnErrors, UnconnectedSocketErrors) {
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
  Fd s(fd);
  char b;
  SEM_EXPECT_ERRNO(recv(fd, &b, 1, MSG_DONTWAIT), ENOTCONN);
  SEM_EXPECT_ERRNO(send(fd, "x", 1, MSG_NOSIGNAL), EPIPE);
  SEM_EXPECT_ERRNO(shutdown(fd, SHUT_WR), ENOTCONN);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  SEM_EXPECT_ERRNO(getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len), ENOTCONN);
  SEM_EXPECT_ERRNO(accept(fd, nullptr, nullptr), EINVAL);
}

}  // namespace
}  // namespace sem
