// Blocking calls vs signals (EINTR, SA_RESTART) and vs close()/shutdown() from another thread.
// Traps covered: T11 (EINTR follows SA_RESTART; poll/epoll_wait always EINTR), T17 (close or
// shutdown while another thread is blocked).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <iostream>
#include <string>

#include "sock_util.h"

namespace sem {
namespace {

std::atomic<int> g_usr1{0};
void on_usr1(int) { g_usr1.fetch_add(1); }

class Usr1Handler {
 public:
  explicit Usr1Handler(bool restart) {
    g_usr1 = 0;
    struct sigaction sa {};
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGUSR1, &sa, &old_);
  }
  ~Usr1Handler() { sigaction(SIGUSR1, &old_, nullptr); }
  Usr1Handler(const Usr1Handler&) = delete;
  Usr1Handler& operator=(const Usr1Handler&) = delete;

 private:
  struct sigaction old_ {};
};

// Signals the call's thread until it returns (the first signal might land just before the thread
// enters the kernel; the next ones find it blocked). Returns false if it never returned.
bool interrupt_until_done(BlockingCall& call) {
  Deadline d(kIoTimeoutMs);
  while (!d.expired()) {
    tgkill(getpid(), call.tid(), SIGUSR1);
    if (call.wait_done(20)) return true;
  }
  return false;
}

// Delivers up to `n` signals, each while the thread is asleep in the kernel, each handled.
// Stops early (without failing) if the call returns: the caller reports what it returned.
void interrupt_blocked_n_times(BlockingCall& call, int n) {
  for (int i = 0; i < n && !call.done(); ++i) {
    bool asleep = call.wait_blocked();
    if (call.done()) return;
    ASSERT_TRUE(asleep) << "thread neither asleep nor returned before signal #" << i
                        << " (spinning?)";
    int before = g_usr1.load();
    tgkill(getpid(), call.tid(), SIGUSR1);
    Deadline d(kIoTimeoutMs);
    while (g_usr1.load() == before && !d.expired()) std::this_thread::yield();
    ASSERT_GT(g_usr1.load(), before) << "signal #" << i << " was never handled";
    call.wait_done(5);  // give a wrongly interrupted call a chance to show itself
  }
}

TEST(Signals, BlockedRecvReturnsEintrWithoutSaRestart) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  Usr1Handler h(/*restart=*/false);
  ssize_t r = -2;
  int e = 0;
  char b[8];
  BlockingCall call([&] {
    r = recv(c.client.get(), b, sizeof b, 0);
    e = errno;
  });
  ASSERT_TRUE(call.wait_blocked());
  ASSERT_TRUE(interrupt_until_done(call))
      << "blocked recv() never returned although SIGUSR1 (no SA_RESTART) was delivered "
      << g_usr1.load() << " time(s)";
  EXPECT_EQ(r, -1) << "interrupted recv() returned " << r;
  EXPECT_EQ(e, EINTR) << "recv() interrupted by a handler without SA_RESTART: " << err(e);
  EXPECT_GE(g_usr1.load(), 1);
}

TEST(Signals, BlockedRecvWithSaRestartContinuesAndReturnsData) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  Usr1Handler h(/*restart=*/true);
  ssize_t r = -2;
  int e = 0;
  char b[8];
  BlockingCall call([&] {
    r = recv(c.client.get(), b, sizeof b, 0);
    e = errno;
  });
  ASSERT_NO_FATAL_FAILURE(interrupt_blocked_n_times(call, 3));
  ASSERT_FALSE(call.done()) << "recv() with an SA_RESTART handler returned " << r << " (" << err(e)
                            << ") after " << g_usr1.load() << " signal(s) instead of restarting";
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "data"));
  ASSERT_TRUE(call.wait_done()) << "restarted recv() did not return the data";
  EXPECT_EQ(r, 4) << "restarted recv(): " << (r < 0 ? err(e) : std::to_string(r));
  EXPECT_EQ(std::string(b, 4), "data");
}

TEST(Signals, BlockedAcceptReturnsEintrWithoutSaRestart) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  Usr1Handler h(/*restart=*/false);
  int r = -2, e = 0;
  BlockingCall call([&] {
    r = accept(l.get(), nullptr, nullptr);
    e = errno;
  });
  ASSERT_TRUE(call.wait_blocked());
  ASSERT_TRUE(interrupt_until_done(call)) << "blocked accept() never returned after signals";
  EXPECT_EQ(r, -1);
  EXPECT_EQ(e, EINTR) << "accept() interrupted by a handler without SA_RESTART: " << err(e);
  if (r >= 0) close(r);
}

TEST(Signals, BlockedAcceptWithSaRestartContinues) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  Usr1Handler h(/*restart=*/true);
  int r = -2, e = 0;
  BlockingCall call([&] {
    r = accept(l.get(), nullptr, nullptr);
    e = errno;
  });
  ASSERT_NO_FATAL_FAILURE(interrupt_blocked_n_times(call, 3));
  ASSERT_FALSE(call.done()) << "accept() with an SA_RESTART handler returned " << r << " ("
                            << err(e) << ") after " << g_usr1.load()
                            << " signal(s) instead of restarting";
  Fd cl;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl, local_addr(l.get())));
  ASSERT_TRUE(call.wait_done());
  EXPECT_GE(r, 0) << "restarted accept(): " << err(e);
  Fd a(r);
}

TEST(Signals, PollAndEpollWaitReturnEintrEvenWithSaRestart) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  Usr1Handler h(/*restart=*/true);
  {
    int r = -2, e = 0;
    BlockingCall call([&] {
      pollfd p{c.client.get(), POLLIN, 0};
      r = poll(&p, 1, kIoTimeoutMs);
      e = errno;
    });
    ASSERT_TRUE(call.wait_blocked());
    ASSERT_TRUE(interrupt_until_done(call));
    EXPECT_EQ(r, -1) << "poll() interrupted by a signal returned " << r;
    EXPECT_EQ(e, EINTR) << "poll() is never restarted: " << err(e);
  }
  {
    Fd ep(epoll_create1(0));
    epoll_event ev{};
    ev.events = EPOLLIN;
    SEM_OK(epoll_ctl(ep.get(), EPOLL_CTL_ADD, c.client.get(), &ev));
    int r = -2, e = 0;
    BlockingCall call([&] {
      r = epoll_wait(ep.get(), &ev, 1, kIoTimeoutMs);
      e = errno;
    });
    ASSERT_TRUE(call.wait_blocked());
    ASSERT_TRUE(interrupt_until_done(call));
    EXPECT_EQ(r, -1) << "epoll_wait() interrupted by a signal returned " << r;
    EXPECT_EQ(e, EINTR) << "epoll_wait() is never restarted: " << err(e);
  }
}

// Linux reference (pinned by this test): close() of an fd in one thread does NOT wake another
// thread blocked in recv() on it; the blocked call holds its own reference to the socket, which
// stays open (no FIN) until the call returns. The call returns when data or EOF arrives and the
// connection is closed when it does. An implementation may instead wake the call at close()
// (the TOSEC shim does, per docs/decisions/0004); the test accepts both and requires only that
// the call returns within a bound once the peer has sent something.
TEST(Close, CloseFromAnotherThreadWhileBlockedInRecvReturns) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int fd = c.client.release();
  ssize_t r = -2;
  int e = 0;
  char b[16];
  BlockingCall call([&] {
    r = recv(fd, b, sizeof b, 0);
    e = errno;
  });
  ASSERT_TRUE(call.wait_blocked());
  ASSERT_EQ(close(fd), 0) << "close() while another thread is in recv(): " << err(errno);
  bool woke_at_close = call.wait_done(kQuietMs);
  if (!woke_at_close) {
    // The Linux path: nudge the connection; the still-blocked recv must now return.
    ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "nudge"));
    ASSERT_TRUE(call.wait_done())
        << "recv() blocked in one thread never returned after another thread closed its fd "
           "and the peer sent data";
  }
  std::string outcome = std::string(woke_at_close ? "woke at close" : "returned after nudge") +
                        ": recv=" + std::to_string(r) + (r < 0 ? " " + err(e) : "");
  RecordProperty("close_wake", outcome);
  std::cout << "[   INFO   ] close-from-another-thread: " << outcome << "\n";
  // Either way the connection is gone once the blocked call is out: the peer sees EOF or RST.
  Deadline d(kIoTimeoutMs);
  for (;;) {
    char x[8];
    ssize_t pr = recv(c.server.get(), x, sizeof x, MSG_DONTWAIT);
    if (pr == 0 || (pr < 0 && errno == ECONNRESET)) break;
    ASSERT_FALSE(d.expired()) << "peer never saw the connection close after close()";
    poll_fd(c.server.get(), POLLIN, d.left_ms());
  }
}

TEST(Close, ShutdownFromAnotherThreadWakesBlockedRecvWithEof) {
  // The portable way to wake a blocked reader: shutdown(), not close().
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ssize_t r = -2;
  int e = 0;
  char b[8];
  BlockingCall call([&] {
    r = recv(c.client.get(), b, sizeof b, 0);
    e = errno;
  });
  ASSERT_TRUE(call.wait_blocked());
  SEM_OK(shutdown(c.client.get(), SHUT_RDWR));
  ASSERT_TRUE(call.wait_done()) << "shutdown(SHUT_RDWR) did not wake a blocked recv()";
  EXPECT_EQ(r, 0) << "recv() woken by shutdown(SHUT_RDWR): " << (r < 0 ? err(e) : "data");
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.server.get()));
}

TEST(Close, ShutdownFromAnotherThreadWakesBlockedAccept) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  int r = -2, e = 0;
  BlockingCall call([&] {
    r = accept(l.get(), nullptr, nullptr);
    e = errno;
  });
  ASSERT_TRUE(call.wait_blocked());
  SEM_OK(shutdown(l.get(), SHUT_RDWR));
  ASSERT_TRUE(call.wait_done()) << "shutdown() of a listener did not wake a blocked accept()";
  EXPECT_EQ(r, -1);
  EXPECT_EQ(e, EINVAL) << "accept() woken by shutdown() of the listener: " << err(e);
  if (r >= 0) close(r);
}

// Linux reference: like recv, a blocked accept() is not woken by close() in another thread; the
// listener keeps accepting until the call returns. Either behaviour is accepted.
TEST(Close, CloseFromAnotherThreadWhileBlockedInAcceptReturns) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  Addr la = local_addr(l.get());
  int lfd = l.release();
  int r = -2, e = 0;
  BlockingCall call([&] {
    r = accept(lfd, nullptr, nullptr);
    e = errno;
  });
  ASSERT_TRUE(call.wait_blocked());
  ASSERT_EQ(close(lfd), 0);
  bool woke_at_close = call.wait_done(kQuietMs);
  Fd cl;
  if (!woke_at_close) {
    int fd;
    SEM_SYS(fd, socket(AF_INET, SOCK_STREAM, 0));
    cl.reset(fd);
    connect(fd, la.sa(), la.len);  // may succeed (Linux) or be refused
    ASSERT_TRUE(call.wait_done())
        << "accept() blocked in one thread never returned after another thread closed the "
           "listener and a client connected";
  }
  std::string outcome = std::string(woke_at_close ? "woke at close" : "returned after nudge") +
                        ": accept=" + std::to_string(r) + (r < 0 ? " " + err(e) : "");
  RecordProperty("close_wake", outcome);
  std::cout << "[   INFO   ] close-listener-from-another-thread: " << outcome << "\n";
  if (r >= 0) close(r);
}

}  // namespace
}  // namespace sem
