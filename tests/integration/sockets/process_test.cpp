// One socket, several fds and processes: dup/dup2/dup3/F_DUPFD_CLOEXEC (refcounted close),
// fork (connected and listening sockets used by parent and child, prefork accept), exec (an
// inherited socket keeps working in the exec'd image; CLOEXEC sockets are closed).
// Traps covered: T13 (fork), T15 (exec), T16 (dup), T17 (close only at the last reference).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "sock_util.h"

namespace sem {
namespace {

// Child-side helpers: no gtest in a forked child; report on stderr and return false.
bool c_send(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      std::fprintf(stderr, "child: send(fd %d): %s\n", fd, err(errno).c_str());
      return false;
    }
    off += static_cast<size_t>(w);
  }
  return true;
}

bool c_expect(int fd, const std::string& want) {
  std::string got;
  Deadline d(kIoTimeoutMs);
  while (got.size() < want.size()) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, d.left_ms()) <= 0) {
      std::fprintf(stderr, "child: timeout waiting for \"%s\" on fd %d (got \"%s\")\n",
                   want.c_str(), fd, got.c_str());
      return false;
    }
    char buf[256];
    ssize_t r = recv(fd, buf, std::min(sizeof buf, want.size() - got.size()), MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r <= 0) {
      std::fprintf(stderr, "child: recv(fd %d): %s\n", fd, r == 0 ? "EOF" : err(errno).c_str());
      return false;
    }
    got.append(buf, static_cast<size_t>(r));
  }
  if (got != want) {
    std::fprintf(stderr, "child: expected \"%s\", got \"%s\"\n", want.c_str(), got.c_str());
    return false;
  }
  return true;
}

// Asserts that nothing (no data, no EOF) is readable on fd for kQuietMs.
void expect_quiet(int fd, const char* why) {
  short ev = poll_fd(fd, POLLIN, kQuietMs);
  EXPECT_EQ(ev, 0) << why << " (revents=" << ev << ")";
}

TEST(Dup, DupSharesTheSocketAndCloseIsRefcounted) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int d;
  SEM_SYS(d, dup(c.client.get()));
  Fd dupfd(d);
  c.client.reset();  // close the original
  expect_quiet(c.server.get(),
               "closing the original fd while a dup exists must not close the "
               "connection");
  ASSERT_NO_FATAL_FAILURE(send_str(d, "via dup"));
  EXPECT_EQ(recv_str(c.server.get(), 7), "via dup");
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "back"));
  EXPECT_EQ(recv_str(d, 4), "back");
  dupfd.reset();  // last reference
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.server.get()));
}

TEST(Dup, Dup2OverAnotherSocketClosesItAndSharesTheFirst) {
  Conn one, two;
  ASSERT_NO_FATAL_FAILURE(make_conn(&one));
  ASSERT_NO_FATAL_FAILURE(make_conn(&two));
  int target = two.client.get();
  int r;
  SEM_SYS(r, dup2(one.client.get(), target));
  EXPECT_EQ(r, target);
  // dup2 closed connection two's client (it was the only reference): its peer sees EOF.
  ASSERT_NO_FATAL_FAILURE(expect_eof(two.server.get()));
  // `target` now is connection one.
  ASSERT_NO_FATAL_FAILURE(send_str(target, "through dup2"));
  EXPECT_EQ(recv_str(one.server.get(), 12), "through dup2");
  int fl_cl = fcntl(target, F_GETFD);
  EXPECT_FALSE(fl_cl & FD_CLOEXEC) << "dup2() must return an fd without FD_CLOEXEC";
  // dup2(a, a) is a no-op returning a; dup3(a, a, 0) is EINVAL.
  EXPECT_EQ(dup2(target, target), target);
  SEM_EXPECT_ERRNO(dup3(target, target, 0), EINVAL);
  one.client.reset();
  expect_quiet(one.server.get(), "closing the original after dup2 must not close the connection");
  ASSERT_NO_FATAL_FAILURE(send_str(one.server.get(), "still here"));
  EXPECT_EQ(recv_str(target, 10), "still here");
  two.client.reset();  // closes `target`, the last reference to connection one
  ASSERT_NO_FATAL_FAILURE(expect_eof(one.server.get()));
}

TEST(Dup, Dup3AndFDupfdCloexec) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int d;
  SEM_SYS(d, fcntl(c.client.get(), F_DUPFD_CLOEXEC, 100));
  Fd d1(d);
  EXPECT_GE(d, 100) << "F_DUPFD_CLOEXEC ignored the minimum fd";
  EXPECT_TRUE(fcntl(d, F_GETFD) & FD_CLOEXEC) << "F_DUPFD_CLOEXEC without FD_CLOEXEC";
  int target = d + 7;
  SEM_SYS(d, dup3(c.client.get(), target, O_CLOEXEC));
  Fd d2(d);
  EXPECT_EQ(d, target);
  EXPECT_TRUE(fcntl(d, F_GETFD) & FD_CLOEXEC) << "dup3(O_CLOEXEC) without FD_CLOEXEC";
  EXPECT_FALSE(fcntl(c.client.get(), F_GETFD) & FD_CLOEXEC) << "CLOEXEC leaked to the original";
  ASSERT_NO_FATAL_FAILURE(send_str(d1.get(), "a"));
  ASSERT_NO_FATAL_FAILURE(send_str(d2.get(), "b"));
  ASSERT_NO_FATAL_FAILURE(send_str(c.client.get(), "c"));
  EXPECT_EQ(recv_str(c.server.get(), 3), "abc");
}

TEST(Fork, ParentAndChildBothUseAnInheritedConnectedSocket) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int a = c.client.get(), b = c.server.get();
  int p[2];
  SEM_OK(pipe(p));
  Fd sync_r(p[0]), sync_w_fd(p[1]);
  int sync_w = p[1];
  Child child;
  ASSERT_TRUE(child.start([a, b, sync_w] {
    // The child uses both inherited ends. Each end is read by one process at a time (the
    // sync pipe orders the hand-over of a), so reads never race.
    if (!c_send(a, "child->parent")) return 1;
    if (!c_expect(a, "parent->child")) return 2;
    if (write(sync_w, "k", 1) != 1) return 3;  // a is the parent's to read from now on
    if (!c_expect(b, "parent-on-a")) return 4;
    if (!c_send(b, "child-on-b")) return 5;
    close(a);  // closing inherited copies must not affect the parent's
    close(b);
    return 0;
  }));
  EXPECT_EQ(recv_str(b, 13), "child->parent") << "parent did not receive what the child sent";
  ASSERT_NO_FATAL_FAILURE(send_str(b, "parent->child"));
  ASSERT_TRUE(poll_fd(sync_r.get(), POLLIN, kIoTimeoutMs) & POLLIN) << "child never got "
                                                                       "\"parent->child\"";
  ASSERT_NO_FATAL_FAILURE(send_str(a, "parent-on-a"));
  EXPECT_EQ(recv_str(a, 10), "child-on-b") << "parent did not receive the child's reply on a";
  EXPECT_EQ(child.wait(), 0) << "child failed (see its stderr)";
  // The child's close+exit dropped only its references.
  expect_quiet(a, "the child's close()/exit closed the parent's connection");
  ASSERT_NO_FATAL_FAILURE(send_str(a, "after child"));
  EXPECT_EQ(recv_str(b, 11), "after child");
  c.client.reset();
  ASSERT_NO_FATAL_FAILURE(expect_eof(b));
}

TEST(Fork, ChildAcceptsOnAnInheritedListener) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  int lfd = l.get();
  Child child;
  ASSERT_TRUE(child.start([lfd] {
    pollfd p{lfd, POLLIN, 0};
    if (poll(&p, 1, kIoTimeoutMs) <= 0) {
      std::fprintf(stderr, "child: no connection on the inherited listener\n");
      return 1;
    }
    int cfd = accept(lfd, nullptr, nullptr);
    if (cfd < 0) {
      std::fprintf(stderr, "child: accept on inherited listener: %s\n", err(errno).c_str());
      return 2;
    }
    if (!c_expect(cfd, "hello")) return 3;
    if (!c_send(cfd, "child accepted")) return 4;
    close(cfd);
    return 0;
  }));
  Fd cl;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl, local_addr(lfd)));
  ASSERT_NO_FATAL_FAILURE(send_str(cl.get(), "hello"));
  EXPECT_EQ(recv_str(cl.get(), 14), "child accepted");
  ASSERT_NO_FATAL_FAILURE(expect_eof(cl.get()));
  EXPECT_EQ(child.wait(), 0) << "child failed (see its stderr)";
  // The parent's listener still works after the child exited.
  Fd cl2, a2;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl2, local_addr(lfd)));
  ASSERT_NO_FATAL_FAILURE(accept_one(&a2, lfd));
  ASSERT_NO_FATAL_FAILURE(send_str(a2.get(), "parent accepted"));
  EXPECT_EQ(recv_str(cl2.get(), 15), "parent accepted");
}

TEST(Fork, PreforkWorkersShareOneListener) {
  // nginx-style: the parent listens, two forked workers accept from the same listener.
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l, AF_INET, SOCK_NONBLOCK, 128));
  int lfd = l.get();
  int p[2];
  SEM_OK(pipe(p));
  Fd stop_r(p[0]), stop_w(p[1]);
  int sr = p[0], sw = p[1];
  Child workers[2];
  for (int w = 0; w < 2; ++w) {
    ASSERT_TRUE(workers[w].start([lfd, sr, sw, w] {
      close(sw);
      for (;;) {
        pollfd pf[2] = {{lfd, POLLIN, 0}, {sr, POLLIN, 0}};
        if (poll(pf, 2, kIoTimeoutMs) <= 0) return 1;
        if (pf[1].revents) return 0;  // stop: parent closed the pipe
        int cfd = accept(lfd, nullptr, nullptr);
        if (cfd < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;  // another worker won the race
          std::fprintf(stderr, "worker %d: accept: %s\n", w, err(errno).c_str());
          return 2;
        }
        if (!c_expect(cfd, "?")) return 3;
        if (!c_send(cfd, std::to_string(w))) return 4;
        close(cfd);
      }
    }));
  }
  const int kClients = 20;
  int served[2] = {0, 0};
  for (int i = 0; i < kClients; ++i) {
    Fd cl;
    ASSERT_NO_FATAL_FAILURE(connect_to(&cl, local_addr(lfd)));
    ASSERT_NO_FATAL_FAILURE(send_str(cl.get(), "?"));
    std::string who = recv_str(cl.get(), 1);
    ASSERT_TRUE(who == "0" || who == "1") << "client " << i << " got \"" << who << "\"";
    ++served[who[0] - '0'];
  }
  stop_w.reset();
  EXPECT_EQ(workers[0].wait(), 0) << "worker 0 failed";
  EXPECT_EQ(workers[1].wait(), 0) << "worker 1 failed";
  EXPECT_EQ(served[0] + served[1], kClients);
  RecordProperty("served", std::to_string(served[0]) + "/" + std::to_string(served[1]));
}

TEST(Fork, OptionsSetBeforeForkHoldForTheChild) {
  // setsockopt() of a flag option returns before the TOE has applied it (decision 0012), and a
  // forked child talks to the TOE over a lane of its own. A child that binds right after the
  // fork must still see the parent's SO_REUSEPORT, however many requests the parent had queued:
  // without it the bind to a port another SO_REUSEPORT listener holds fails with EADDRINUSE.
  Fd holder(socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_GE(holder.get(), 0) << err(errno);
  const int one = 1;
  SEM_OK(setsockopt(holder.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one));
  Addr any = loopback(AF_INET);
  SEM_OK(bind(holder.get(), any.sa(), any.len));
  SEM_OK(listen(holder.get(), 8));
  const Addr taken = local_addr(holder.get());

  Fd s(socket(AF_INET, SOCK_STREAM, 0));
  ASSERT_GE(s.get(), 0) << err(errno);
  for (int i = 0; i < 2000; ++i) {  // a long queue of requests ahead of the one that matters
    const int v = i % 2;
    SEM_OK(setsockopt(s.get(), SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v));
  }
  SEM_OK(setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one));
  const int fd = s.get();
  Child child;
  ASSERT_TRUE(child.start([fd, taken] {
    if (bind(fd, taken.sa(), taken.len) != 0) {
      std::fprintf(stderr, "child: bind to the SO_REUSEPORT port: %s\n", err(errno).c_str());
      return 1;
    }
    return listen(fd, 8) == 0 ? 0 : 2;
  }));
  EXPECT_EQ(child.wait(), 0) << "the child did not see the parent's SO_REUSEPORT";
}

TEST(Exec, InheritedConnectedSocketKeepsWorkingInExecdChild) {
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  int a = c.client.get();
  Child helper;
  ASSERT_TRUE(helper.start_helper({"echo-fd", std::to_string(a)}, {a}));
  c.client.reset();  // the exec'd child holds the only reference now
  ASSERT_NO_FATAL_FAILURE(send_str(c.server.get(), "hello\n"));
  std::string want = "exec:" + std::to_string(SOCK_STREAM) + ":" + std::to_string(AF_INET) + ":" +
                     std::to_string(local_addr(c.server.get()).port()) + ":hello\n";
  EXPECT_EQ(recv_str(c.server.get(), want.size()), want)
      << "exec'd child (SO_TYPE:SO_DOMAIN:peer port:line) saw the inherited socket differently";
  // Bulk echo through the exec'd image.
  std::vector<char> out(1u << 20), in(1u << 20);
  fill_pattern(33, 0, out.data(), out.size());
  BlockingCall reader([&] { recv_exact(c.server.get(), in.data(), in.size()); });
  ASSERT_NO_FATAL_FAILURE(send_all(c.server.get(), out.data(), out.size()));
  ASSERT_TRUE(reader.wait_done());
  EXPECT_TRUE(in == out) << "1 MiB echoed through the exec'd child came back corrupted";
  SEM_OK(shutdown(c.server.get(), SHUT_WR));
  // The helper sees EOF, exits; that was the last reference, so we see EOF too.
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.server.get()));
  EXPECT_EQ(helper.wait(), 0) << "exec'd helper failed (see its stderr)";
}

TEST(Exec, InheritedListenerAcceptsInExecdChild) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  Addr la = local_addr(l.get());
  Child helper;
  ASSERT_TRUE(helper.start_helper({"accept-fd", std::to_string(l.get())}, {l.get()}));
  l.reset();
  Fd cl;
  ASSERT_NO_FATAL_FAILURE(connect_to(&cl, la));
  ASSERT_NO_FATAL_FAILURE(send_str(cl.get(), "ping"));
  EXPECT_EQ(recv_str(cl.get(), 4), "ping") << "no echo from the exec'd child's accept()";
  SEM_OK(shutdown(cl.get(), SHUT_WR));
  ASSERT_NO_FATAL_FAILURE(expect_eof(cl.get()));
  EXPECT_EQ(helper.wait(), 0) << "exec'd helper failed (see its stderr)";
}

TEST(Exec, CloexecSocketIsClosedByExec) {
  Fd l;
  ASSERT_NO_FATAL_FAILURE(make_listener(&l));
  int fd;
  SEM_SYS(fd, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  Fd cl(fd);
  Addr la = local_addr(l.get());
  SEM_OK(connect(fd, la.sa(), la.len));
  Fd srv;
  ASSERT_NO_FATAL_FAILURE(accept_one(&srv, l.get()));
  Child helper;
  ASSERT_TRUE(helper.start_helper({"expect-closed", std::to_string(fd)}));
  cl.reset();  // the parent's reference; the child's went away at exec
  ASSERT_NO_FATAL_FAILURE(expect_eof(srv.get()));
  EXPECT_EQ(helper.wait(), 0) << "a SOCK_CLOEXEC socket was still open in the exec'd child";
}

}  // namespace
}  // namespace sem
