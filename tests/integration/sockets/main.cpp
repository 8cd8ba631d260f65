// Entry point of socket_semantics_test.
//
// `socket_semantics_test [gtest flags]` runs the suite. `socket_semantics_test --sem-helper MODE
// ARGS...` is a helper mode used by the exec tests: the suite fork()s and exec()s its own binary
// so that a socket crosses an exec boundary (under `tosec run` the exec'd image gets a fresh
// shim that must rediscover the inherited socket).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "sock_util.h"

namespace {

// Writes all of s; returns false on error.
bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

// echo-fd FD: FD is an inherited connected TCP socket. Reads one line, answers
// "exec:<type>:<domain>:<peer port>:<line>\n", then echoes until EOF. Exit 0 on success.
int helper_echo_fd(int fd) {
  int type = -1, domain = -1;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    std::fprintf(stderr, "helper echo-fd: getsockopt(SO_TYPE) on inherited fd %d: %s\n", fd,
                 sem::err(errno).c_str());
    return 20;
  }
  len = sizeof domain;
  getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
  sem::Addr peer = sem::peer_addr(fd);
  std::string line;
  for (;;) {
    char c;
    ssize_t r = recv(fd, &c, 1, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      std::fprintf(stderr, "helper echo-fd: recv on inherited fd %d: %s\n", fd,
                   r == 0 ? "EOF" : sem::err(errno).c_str());
      return 21;
    }
    if (c == '\n') break;
    line += c;
  }
  std::string reply = "exec:" + std::to_string(type) + ":" + std::to_string(domain) + ":" +
                      std::to_string(peer.port()) + ":" + line + "\n";
  if (!write_all(fd, reply)) return 22;
  char buf[65536];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return 0;
    if (r < 0) {
      std::fprintf(stderr, "helper echo-fd: recv: %s\n", sem::err(errno).c_str());
      return 23;
    }
    if (!write_all(fd, std::string(buf, static_cast<size_t>(r)))) return 24;
  }
}

// accept-fd FD: FD is an inherited listening socket. Accepts one connection, echoes it until
// EOF. Exit 0 on success.
int helper_accept_fd(int fd) {
  int acc = -1;
  socklen_t len = sizeof acc;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || acc != 1) {
    std::fprintf(stderr, "helper accept-fd: SO_ACCEPTCONN on inherited fd %d is %d (%s)\n", fd, acc,
                 sem::err(errno).c_str());
    return 30;
  }
  int c = accept(fd, nullptr, nullptr);
  if (c < 0) {
    std::fprintf(stderr, "helper accept-fd: accept: %s\n", sem::err(errno).c_str());
    return 31;
  }
  char buf[65536];
  for (;;) {
    ssize_t r = recv(c, buf, sizeof buf, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return 0;
    if (r < 0) return 32;
    if (!write_all(c, std::string(buf, static_cast<size_t>(r)))) return 33;
  }
}

// expect-closed FD: FD was a SOCK_CLOEXEC socket in the parent; exec must have closed it.
// (The number may have been reused by something the new image opened for itself; only an
// AF_INET socket there counts as "still open".)
int helper_expect_closed(int fd) {
  if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) return 0;
  int domain = -1;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_INET) return 0;
  std::fprintf(stderr, "helper expect-closed: fd %d is still an AF_INET socket after exec\n", fd);
  return 40;
}

int run_helper(int argc, char** argv) {
  // argv[0] = mode. Bounded: a helper that hangs is killed by SIGALRM.
  alarm(120);
  if (argc < 1) return 2;
  std::string mode = argv[0];
  if (mode == "echo-fd" && argc == 2) return helper_echo_fd(std::atoi(argv[1]));
  if (mode == "accept-fd" && argc == 2) return helper_accept_fd(std::atoi(argv[1]));
  if (mode == "expect-closed" && argc == 2) return helper_expect_closed(std::atoi(argv[1]));
  std::fprintf(stderr, "unknown helper mode %s\n", mode.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  sem::set_self_exe(argv[0]);
  if (argc >= 2 && std::strcmp(argv[1], "--sem-helper") == 0) {
    return run_helper(argc - 2, argv + 2);
  }
  // EPIPE tests check errno; SIGPIPE itself is tested with its own handler (see
  // ConnErrors.EpipeRaisesSigpipeUnlessMsgNosignal).
  signal(SIGPIPE, SIG_IGN);
  ::testing::InitGoogleTest(&argc, argv);
  sem::install_watchdog();
  return RUN_ALL_TESTS();
}
