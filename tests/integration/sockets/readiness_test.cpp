// Readiness: epoll (level-triggered, EPOLLET, EPOLLONESHOT, one fd in two sets, mixed kernel and
// socket fds, epoll_ctl from another thread, EPOLLRDHUP/EPOLLHUP/EPOLLERR, dup'd fd in a set),
// select() and poll() over mixed fds.
// Traps covered: T9 (epoll), T10 (select/poll), T16 (epoll entry survives close while dup'd).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "sock_util.h"

namespace sem {
namespace {

void epoll_add(int ep, int fd, uint32_t events, uint64_t data) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = data;
  SEM_OK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
}

// epoll_wait retrying on EINTR; returns the events.
std::vector<epoll_event> wait_events(int ep, int timeout_ms) {
  std::vector<epoll_event> evs(16);
  Deadline d(timeout_ms);
  for (;;) {
    int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), d.left_ms());
    if (n >= 0) {
      evs.resize(static_cast<size_t>(n));
      return evs;
    }
    if (errno != EINTR || d.expired()) {
      ADD_FAILURE() << "epoll_wait: " << err(errno);
      return {};
    }
  }
}

std::string describe(const std::vector<epoll_event>& evs) {
  std::string s = std::to_string(evs.size()) + " event(s):";
  for (auto& e : evs) {
    s += " {data=" + std::to_string(e.data.u64) + " events=0x";
    char b[16];
    snprintf(b, sizeof b, "%x", e.events);
    s += b;
    s += "}";
  }
  return s;
}

// Waits (bounded) until `ep` reports `data` with `mask`; returns that event's flags (0 if never).
uint32_t wait_for(int ep, uint64_t data, uint32_t mask) {
  Deadline d(kIoTimeoutMs);
  while (!d.expired()) {
    for (auto& e : wait_events(ep, d.left_ms())) {
      if (e.data.u64 == data && (e.events & mask)) return e.events;
    }
  }
  return 0;
}

// Drains a non-blocking read of everything currently queued; returns the byte count.
size_t drain(int fd) {
  size_t total = 0;
  char buf[4096];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r <= 0) return total;
    total += static_cast<size_t>(r);
  }
}

Fd make_epoll() {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  EXPECT_GE(ep, 0) << "epoll_create1: " << err(errno);
  return Fd(ep);
}

// Sends `msg` from `from` and waits until `to` has all of it queued (FIONREAD-free: peeks).
void send_and_settle(int from, int to, const std::string& msg) {
  ASSERT_NO_FATAL_FAILURE(send_str(from, msg));
  Deadline d(kIoTimeoutMs);
  std::string buf(msg.size() + 64, '\0');
  for (;;) {
    ssize_t r = recv(to, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT);
    if (r >= static_cast<ssize_t>(msg.size())) return;
    ASSERT_FALSE(d.expired()) << msg.size() << " bytes never arrived";
    poll_fd(to, POLLIN, 10);
  }
}

constexpr uint64_t kTag = 0xFEEDFACECAFEBEEFULL;  // full 64-bit user data must round-trip

TEST(Epoll, LevelTriggeredReportsUntilDrained) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  Fd ep = make_epoll();
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), c.client.get(), EPOLLIN, kTag));
  auto none = wait_events(ep.get(), 0);
  EXPECT_TRUE(none.empty()) << "idle socket: " << describe(none);
  ASSERT_NO_FATAL_FAILURE(send_and_settle(c.server.get(), c.client.get(), "level"));
  for (int i = 0; i < 3; ++i) {
    auto evs = wait_events(ep.get(), kIoTimeoutMs);
    ASSERT_EQ(evs.size(), 1u) << "LT wait #" << i << " with unread data: " << describe(evs);
    EXPECT_EQ(evs[0].data.u64, kTag) << "epoll lost the 64-bit user data";
    EXPECT_TRUE(evs[0].events & EPOLLIN) << describe(evs);
  }
  EXPECT_EQ(drain(c.client.get()), 5u);
  auto after = wait_events(ep.get(), kQuietMs);
  EXPECT_TRUE(after.empty()) << "LT after draining: " << describe(after);
}

TEST(Epoll, EdgeTriggeredOneWakeupPerArrivalNoneAfterDraining) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  Fd ep = make_epoll();
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), c.client.get(), EPOLLIN | EPOLLET, kTag));
  ASSERT_NO_FATAL_FAILURE(send_and_settle(c.server.get(), c.client.get(), "one"));
  auto evs = wait_events(ep.get(), kIoTimeoutMs);
  ASSERT_EQ(evs.size(), 1u) << "ET after the first arrival: " << describe(evs);
  EXPECT_EQ(evs[0].data.u64, kTag);
  auto again = wait_events(ep.get(), kQuietMs);
  EXPECT_TRUE(again.empty()) << "ET must not report again without a new arrival (data still "
                                "unread): "
                             << describe(again);
  // A new arrival gives exactly one new wakeup even though older data is still queued.
  ASSERT_NO_FATAL_FAILURE(send_and_settle(c.server.get(), c.client.get(), "onetwo"));
  evs = wait_events(ep.get(), kIoTimeoutMs);
  ASSERT_EQ(evs.size(), 1u) << "ET after the second arrival: " << describe(evs);
  again = wait_events(ep.get(), kQuietMs);
  EXPECT_TRUE(again.empty()) << "ET second report without arrival: " << describe(again);
  // Drain to EAGAIN: no wakeup afterwards.
  EXPECT_EQ(drain(c.client.get()), 9u) << "\"one\" + \"onetwo\" expected";
  again = wait_events(ep.get(), kQuietMs);
  EXPECT_TRUE(again.empty()) << "ET after draining to EAGAIN: " << describe(again);
  // And the next arrival still wakes.
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "three"));
  EXPECT_TRUE(wait_for(ep.get(), kTag, EPOLLIN)) << "ET: no wakeup for an arrival after draining";
}

TEST(Epoll, OneshotDisarmsUntilRearmedWithCtlMod) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  Fd ep = make_epoll();
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), c.client.get(), EPOLLIN | EPOLLONESHOT, kTag));
  ASSERT_NO_FATAL_FAILURE(send_and_settle(c.server.get(), c.client.get(), "a"));
  auto evs = wait_events(ep.get(), kIoTimeoutMs);
  ASSERT_EQ(evs.size(), 1u) << "ONESHOT first report: " << describe(evs);
  ASSERT_NO_FATAL_FAILURE(send_and_settle(c.server.get(), c.client.get(), "ab"));
  auto none = wait_events(ep.get(), kQuietMs);
  EXPECT_TRUE(none.empty()) << "ONESHOT reported again before re-arming: " << describe(none);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = kTag + 1;
  SEM_OK(epoll_ctl(ep.get(), EPOLL_CTL_MOD, c.client.get(), &ev));
  evs = wait_events(ep.get(), kIoTimeoutMs);
  ASSERT_EQ(evs.size(), 1u) << "ONESHOT after EPOLL_CTL_MOD with data pending: " << describe(evs);
  EXPECT_EQ(evs[0].data.u64, kTag + 1) << "EPOLL_CTL_MOD did not replace the user data";
  none = wait_events(ep.get(), kQuietMs);
  EXPECT_TRUE(none.empty()) << "ONESHOT re-armed once reported twice: " << describe(none);
}

TEST(Epoll, OneSocketInTwoEpollSets) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  Fd ep1 = make_epoll(), ep2 = make_epoll();
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep1.get(), c.client.get(), EPOLLIN, 1));
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep2.get(), c.client.get(), EPOLLIN | EPOLLET, 2));
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "both"));
  EXPECT_TRUE(wait_for(ep1.get(), 1, EPOLLIN)) << "first epoll set (LT) never reported";
  EXPECT_TRUE(wait_for(ep2.get(), 2, EPOLLIN)) << "second epoll set (ET) never reported";
  // Removing it from one set leaves the other working. (Drain first, so the ET check below
  // does not depend on a new edge while old data is unread; that is tested on its own in
  // Epoll.EdgeTriggeredOneWakeupPerArrivalNoneAfterDraining.)
  EXPECT_EQ(drain(c.client.get()), 4u);
  SEM_OK(epoll_ctl(ep1.get(), EPOLL_CTL_DEL, c.client.get(), nullptr));
  auto gone = wait_events(ep1.get(), 0);
  EXPECT_TRUE(gone.empty()) << "deleted fd still reported: " << describe(gone);
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "more"));
  EXPECT_TRUE(wait_for(ep2.get(), 2, EPOLLIN)) << "second set stopped after DEL from the first";
}

TEST(Epoll, MixedKernelFdsAndSocketInOneSet) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int p[2];
  SEM_OK(pipe2(p, O_NONBLOCK | O_CLOEXEC));
  Fd pr(p[0]), pw(p[1]);
  int efd;
  SEM_SYS(efd, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  Fd ev(efd);
  Fd ep = make_epoll();
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), c.client.get(), EPOLLIN, 100));
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), pr.get(), EPOLLIN, 200));
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), efd, EPOLLIN, 300));
  // Each source alone wakes the set, identified by its data.
  ASSERT_EQ(write(pw.get(), "p", 1), 1);
  EXPECT_TRUE(wait_for(ep.get(), 200, EPOLLIN)) << "pipe readiness not reported";
  char b;
  ASSERT_EQ(read(pr.get(), &b, 1), 1);
  uint64_t one = 1;
  ASSERT_EQ(write(efd, &one, 8), 8);
  EXPECT_TRUE(wait_for(ep.get(), 300, EPOLLIN)) << "eventfd readiness not reported";
  uint64_t v;
  ASSERT_EQ(read(efd, &v, 8), 8);
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "s"));
  uint32_t got = wait_for(ep.get(), 100, EPOLLIN);
  EXPECT_TRUE(got) << "socket readiness not reported alongside kernel fds";
  // All three at once.
  ASSERT_EQ(write(pw.get(), "p", 1), 1);
  ASSERT_EQ(write(efd, &one, 8), 8);
  Deadline d(kIoTimeoutMs);
  bool seen[3] = {false, false, false};
  while (!(seen[0] && seen[1] && seen[2]) && !d.expired()) {
    for (auto& e : wait_events(ep.get(), d.left_ms())) {
      if (e.data.u64 == 100) seen[0] = true;
      if (e.data.u64 == 200) seen[1] = true;
      if (e.data.u64 == 300) seen[2] = true;
    }
  }
  EXPECT_TRUE(seen[0]) << "socket missing when all three are ready";
  EXPECT_TRUE(seen[1]) << "pipe missing when all three are ready";
  EXPECT_TRUE(seen[2]) << "eventfd missing when all three are ready";
}

TEST(Epoll, CtlAddFromAnotherThreadWakesEpollWait) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  ASSERT_NO_FATAL_FAILURE(send_and_settle(c.server.get(), c.client.get(), "ready"));
  Fd ep = make_epoll();
  int n = -2;
  epoll_event got{};
  BlockingCall waiter([&] { n = epoll_wait(ep.get(), &got, 1, kIoTimeoutMs); });
  ASSERT_TRUE(waiter.wait_blocked());
  // The fd is already readable when it is added: the sleeping epoll_wait must wake.
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), c.client.get(), EPOLLIN, kTag));
  ASSERT_TRUE(waiter.wait_done(kIoTimeoutMs + 5000));
  ASSERT_EQ(n, 1) << "epoll_wait in another thread was not woken by EPOLL_CTL_ADD of a ready "
                     "socket (returned "
                  << n << ")";
  EXPECT_EQ(got.data.u64, kTag);
}

TEST(Epoll, DataArrivalWakesBlockedEpollWait) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  Fd ep = make_epoll();
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), c.client.get(), EPOLLIN, kTag));
  int n = -2;
  epoll_event got{};
  BlockingCall waiter([&] { n = epoll_wait(ep.get(), &got, 1, kIoTimeoutMs); });
  ASSERT_TRUE(waiter.wait_blocked());
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "wake"));
  ASSERT_TRUE(waiter.wait_done(kIoTimeoutMs + 5000));
  EXPECT_EQ(n, 1) << "blocked epoll_wait not woken by data arrival";
}

TEST(Epoll, RdhupOnPeerShutdownAndHupErrOnReset) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  Fd ep = make_epoll();
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), c.client.get(), EPOLLIN | EPOLLRDHUP, kTag));
  SEM_OK(shutdown(c.server.get(), SHUT_WR));
  uint32_t ev = wait_for(ep.get(), kTag, EPOLLRDHUP);
  EXPECT_TRUE(ev & EPOLLRDHUP) << "no EPOLLRDHUP after the peer's SHUT_WR";
  EXPECT_FALSE(ev & EPOLLHUP) << "EPOLLHUP on a half-closed connection (events=" << ev << ")";
  linger lg{1, 0};
  SEM_OK(setsockopt(c.server.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
  c.server.reset();
  // EPOLLERR and EPOLLHUP are always reported, even though only EPOLLIN|EPOLLRDHUP was asked.
  ev = wait_for(ep.get(), kTag, EPOLLHUP);
  EXPECT_TRUE(ev & EPOLLHUP) << "no EPOLLHUP after RST";
  EXPECT_TRUE(ev & EPOLLERR) << "no EPOLLERR after RST (events=" << ev << ")";
}

TEST(Epoll, NonblockingConnectReportsEpollout) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  Fd s(fd);
  Fd ep = make_epoll();
  Addr a = local_addr(l.get());
  int r = connect(fd, a.sa(), a.len);
  ASSERT_TRUE(r == 0 || errno == EINPROGRESS) << err(errno);
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), fd, EPOLLOUT | EPOLLET, kTag));
  EXPECT_TRUE(wait_for(ep.get(), kTag, EPOLLOUT)) << "no EPOLLOUT for a completed connect";
}

TEST(Epoll, RegistrationSurvivesCloseWhileDupExists) {
  // epoll watches the open file description: closing one fd of two does not remove it.
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int d;
  SEM_SYS(d, dup(c.client.get()));
  Fd dupfd(d);
  Fd ep = make_epoll();
  ASSERT_NO_FATAL_FAILURE(epoll_add(ep.get(), c.client.get(), EPOLLIN, kTag));
  c.client.reset();
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "still"));
  EXPECT_TRUE(wait_for(ep.get(), kTag, EPOLLIN))
      << "epoll stopped reporting after closing one of two fds of the socket";
  EXPECT_EQ(recv_str(d, 5), "still");
}

TEST(Select, MixedSocketAndPipe) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int p[2];
  SEM_OK(pipe(p));
  Fd pr(p[0]), pw(p[1]);
  int s = c.client.get();
  ASSERT_LT(s, FD_SETSIZE);
  ASSERT_LT(pr.get(), FD_SETSIZE);
  auto run = [&](fd_set* rd, fd_set* wr, int timeout_ms) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int nfds = std::max(s, std::max(pr.get(), pw.get())) + 1;
    return select(nfds, rd, wr, nullptr, &tv);
  };
  fd_set rd, wr;
  FD_ZERO(&rd);
  FD_SET(s, &rd);
  FD_SET(pr.get(), &rd);
  EXPECT_EQ(run(&rd, nullptr, 0), 0) << "select() reports readiness on idle socket and pipe";
  // Socket writable, pipe write end writable.
  FD_ZERO(&wr);
  FD_SET(s, &wr);
  FD_SET(pw.get(), &wr);
  EXPECT_EQ(run(nullptr, &wr, kIoTimeoutMs), 2) << "select(): socket and pipe should be writable";
  // Only the pipe readable.
  ASSERT_EQ(write(pw.get(), "x", 1), 1);
  FD_ZERO(&rd);
  FD_SET(s, &rd);
  FD_SET(pr.get(), &rd);
  ASSERT_EQ(run(&rd, nullptr, kIoTimeoutMs), 1);
  EXPECT_TRUE(FD_ISSET(pr.get(), &rd)) << "select() missed the readable pipe";
  EXPECT_FALSE(FD_ISSET(s, &rd)) << "select() reports an idle socket readable";
  // Both readable.
  ASSERT_NO_FATAL_FAILURE(send_and_settle(c.server.get(), s, "x"));
  FD_ZERO(&rd);
  FD_SET(s, &rd);
  FD_SET(pr.get(), &rd);
  EXPECT_EQ(run(&rd, nullptr, kIoTimeoutMs), 2) << "select(): expected socket and pipe readable";
  EXPECT_TRUE(FD_ISSET(s, &rd)) << "select() missed the readable socket";
  // select() with no fds and a timeout is a sleep and must return 0.
  timeval tv{0, 1000};
  EXPECT_EQ(select(0, nullptr, nullptr, nullptr, &tv), 0) << "select(0 fds) as a sleep";
}

TEST(Poll, MixedSocketAndPipeAndPollnval) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int p[2];
  SEM_OK(pipe(p));
  Fd pr(p[0]), pw(p[1]);
  int closed_fd;
  SEM_SYS(closed_fd, socket(AF_INET, SOCK_STREAM, 0));
  close(closed_fd);
  pollfd fds[3] = {{c.client.get(), POLLIN, 0}, {pr.get(), POLLIN, 0}, {closed_fd, POLLIN, 0}};
  int n = poll(fds, 3, 0);
  EXPECT_EQ(n, 1) << "idle socket+pipe plus a closed fd: only the closed fd should report";
  EXPECT_EQ(fds[2].revents, POLLNVAL) << "a closed socket fd must report POLLNVAL";
  EXPECT_EQ(fds[0].revents, 0);
  ASSERT_NO_FATAL_FAILURE(send_and_settle(c.server.get(), c.client.get(), "x"));
  ASSERT_EQ(write(pw.get(), "x", 1), 1);
  fds[2].fd = -1;  // ignored
  n = poll(fds, 3, kIoTimeoutMs);
  EXPECT_EQ(n, 2) << "poll(): expected socket and pipe readable";
  EXPECT_TRUE(fds[0].revents & POLLIN) << "poll() missed the readable socket";
  EXPECT_TRUE(fds[1].revents & POLLIN) << "poll() missed the readable pipe";
  EXPECT_EQ(fds[2].revents, 0) << "negative fd must be ignored";
  // POLLOUT on an idle connected socket, and not POLLHUP.
  pollfd w{c.client.get(), POLLOUT, 0};
  ASSERT_EQ(poll(&w, 1, kIoTimeoutMs), 1);
  EXPECT_EQ(w.revents, POLLOUT) << "idle connected socket: revents=" << w.revents;
}

TEST(Poll, ListenerReadableWhenConnectionPending) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  EXPECT_EQ(poll_fd(l.get(), POLLIN, 0), 0) << "empty listener polls readable";
  Fd cl;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl, local_addr(l.get())));
  EXPECT_TRUE(poll_fd(l.get(), POLLIN, kIoTimeoutMs) & POLLIN)
      << "listener with a pending connection does not poll readable";
  Fd a;
  ASSERT_NO_FATAL_FAILURE(accept_one(&a, l.get()));
  EXPECT_EQ(poll_fd(l.get(), POLLIN, kQuietMs), 0) << "listener still readable after accept";
}

// Busy-waits round % 40 microseconds: the event this thread just started lands at varied
// points of the blocking call that follows (before it, while it spins, after it went to sleep).
void busy_wait(int round) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(round % 40);
  while (std::chrono::steady_clock::now() < until) {
  }
}

// A blocked recv that takes only part of what arrived leaves the socket readable for the rest,
// for poll and for a level-triggered epoll. The shim's blocked reader first spins on shared
// memory and asks the TOE not to mark the placeholder readable meanwhile; it must hand the
// readiness back when it leaves data behind. The data has to arrive during that spin, so this
// thread sends it itself just before the recv (a third thread would not get a CPU while the
// reader and the TOE spin on 2 cores).
TEST(Poll, PartialBlockingRecvLeavesTheRestReadable) {
  for (int round = 0; round < 100; ++round) {
    Conn c;
    ASSERT_NO_FATAL_FAILURE(make_conn(&c));
    ASSERT_EQ(send(c.server.get(), "0123456789", 10, MSG_NOSIGNAL), 10) << err(errno);
    busy_wait(round);
    char head[4];
    const ssize_t r = recv(c.client.get(), head, sizeof head, 0);
    ASSERT_EQ(r, 4) << err(errno);
    ASSERT_TRUE(poll_fd(c.client.get(), POLLIN, kIoTimeoutMs) & POLLIN)
        << "round " << round
        << ": 6 bytes left after a partial blocking recv, but the socket does not poll readable";
    Fd ep(epoll_create1(EPOLL_CLOEXEC));
    ASSERT_TRUE(ep.valid()) << err(errno);
    epoll_add(ep.get(), c.client.get(), EPOLLIN, 1);
    ASSERT_EQ(wait_events(ep.get(), kIoTimeoutMs).size(), 1U) << "round " << round;
    ASSERT_EQ(recv_str(c.client.get(), 6), "456789");
  }
}

// The same for a listener: a blocked accept that takes one of two pending connections (two
// non-blocking connects started just before it). Offloaded, the TOE usually has both
// connections queued before accept starts waiting, so this rarely reaches the claimed case
// the recv test above does: it guards the semantics, the code path is shared (keep_readable).
TEST(Poll, BlockingAcceptOfOneOfTwoLeavesTheListenerReadable) {
  for (int round = 0; round < 50; ++round) {
    Fd l;
    ASSERT_NO_FATAL_FAILURE(make_listener(&l));
    const Addr to = local_addr(l.get());
    Fd c1(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    Fd c2(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(c1.valid() && c2.valid()) << err(errno);
    for (const Fd* c : {&c1, &c2}) {
      const int rc = connect(c->get(), to.sa(), to.len);
      ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << err(errno);
    }
    busy_wait(round);
    Fd first(accept(l.get(), nullptr, nullptr));
    ASSERT_TRUE(first.valid()) << err(errno);
    // The TOE may still be taking the second connection from the kernel: wait for it.
    ASSERT_TRUE(poll_fd(l.get(), POLLIN, kIoTimeoutMs) & POLLIN)
        << "round " << round << ": a second connection is pending, but the listener does not "
        << "poll readable";
    Fd second;
    ASSERT_NO_FATAL_FAILURE(accept_one(&second, l.get()));
  }
}

}  // namespace
}  // namespace sem
