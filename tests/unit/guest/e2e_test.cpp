// End-to-end: the C API of libtosec against a real TOE (tosec-tovm) and ivshmem server started
// by the test. Skips when the binaries were not built. Every wait is bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tosec/guest/tosec.h"

extern char** environ;

namespace {

pid_t g_server = -1;
pid_t g_toe = -1;
std::string g_dir;
std::string g_setup_error;  // a start-up that failed: every test fails with it

pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  return pid;
}

// Up to 30 s (a sanitizer build zeroing a 64 MiB region on a loaded machine is slow), and no
// longer than the process that should make it lives.
bool wait_for_file(const std::string& path, pid_t& maker) {
  for (int i = 0; i < 3000; ++i) {
    struct stat st {};
    if (stat(path.c_str(), &st) == 0) return true;
    if (waitpid(maker, nullptr, WNOHANG) == maker) {
      maker = -1;  // reaped: nothing for stop() to kill
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void stop(pid_t& pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) {
      pid = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  pid = -1;
}

class E2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access(TOSEC_TOVM_BIN, X_OK) != 0 || access(TOSEC_IVSHMEM_SERVER_BIN, X_OK) != 0) return;
    char tmpl[] = "/tmp/tosec-guest-e2e-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      g_setup_error = std::string("mkdtemp: ") + std::strerror(errno);
      return;
    }
    g_dir = tmpl;
    const std::string sock = g_dir + "/ivshmem.sock";
    const std::string toe = g_dir + "/toe.sock";
    g_server = spawn({TOSEC_IVSHMEM_SERVER_BIN, "-F", "-S", sock, "-M",
                      "tosec-e2e-" + std::to_string(getpid()), "-l", "64M", "-n", "1"});
    if (g_server < 0 || !wait_for_file(sock, g_server)) {
      g_setup_error = "tosec-ivshmem-server made no socket at " + sock;
      return;
    }
    g_toe = spawn({TOSEC_TOVM_BIN, "--guest", "e2e", "--ivshmem", sock, "--sidecar", toe});
    if (g_toe < 0 || !wait_for_file(toe, g_toe)) {
      g_setup_error = "tosec-tovm made no sidecar at " + toe;
      return;
    }
    setenv("TOSEC_IVSHMEM_SOCKET", sock.c_str(), 1);
    setenv("TOSEC_TOE_SOCKET", toe.c_str(), 1);
    setenv("TOSEC_EXCLUDE", "", 1);
  }
  static void TearDownTestSuite() {
    stop(g_toe);
    stop(g_server);
    if (!g_dir.empty()) {
      unlink((g_dir + "/ivshmem.sock").c_str());
      unlink((g_dir + "/toe.sock").c_str());
      rmdir(g_dir.c_str());
    }
  }
  void SetUp() override {
    ASSERT_EQ(g_setup_error, "");
    if (g_toe <= 0) GTEST_SKIP() << "tosec-tovm / tosec-ivshmem-server not available";
    ASSERT_EQ(tosec_available(), 1);
  }

  static sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }
  static const sockaddr* sa(const sockaddr_in& a) { return reinterpret_cast<const sockaddr*>(&a); }

  // A connected pair: {client, accepted server side}; the listener is closed.
  static std::pair<int, int> tcp_pair() {
    const int l = tosec_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_GE(l, 0);
    EXPECT_EQ(tosec_is_offloaded(l), 1);
    auto a = loopback(0);
    EXPECT_EQ(tosec_bind(l, sa(a), sizeof a), 0);
    EXPECT_EQ(tosec_listen(l, 16), 0);
    socklen_t len = sizeof a;
    EXPECT_EQ(tosec_getsockname(l, reinterpret_cast<sockaddr*>(&a), &len), 0);
    EXPECT_NE(a.sin_port, 0);
    const int c = tosec_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(tosec_connect(c, sa(a), sizeof a), 0);
    const int s = tosec_accept4(l, nullptr, nullptr, 0);
    EXPECT_GE(s, 0);
    EXPECT_EQ(tosec_close(l), 0);
    return {c, s};
  }

  static bool readable(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1;
  }
};

TEST_F(E2E, TcpBulkBothWays) {
  auto [c, s] = tcp_pair();
  std::vector<char> out(1 << 20);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(i * 7);
  std::thread writer([&, fd = c] {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = tosec_send(fd, out.data() + done, out.size() - done, 0);
      ASSERT_GT(n, 0);
      done += static_cast<std::size_t>(n);
    }
  });
  std::vector<char> in(out.size());
  std::size_t got = 0;
  while (got < in.size()) {
    const ssize_t n = tosec_recv(s, in.data() + got, in.size() - got, 0);
    ASSERT_GT(n, 0);
    got += static_cast<std::size_t>(n);
  }
  writer.join();
  EXPECT_EQ(in, out);
  const char reply[] = "reply";
  EXPECT_EQ(tosec_send(s, reply, sizeof reply, 0), static_cast<ssize_t>(sizeof reply));
  char buf[16] = {};
  EXPECT_EQ(tosec_recv(c, buf, sizeof reply, MSG_WAITALL), static_cast<ssize_t>(sizeof reply));
  EXPECT_STREQ(buf, reply);
  EXPECT_EQ(tosec_close(c), 0);
  EXPECT_TRUE(readable(s, 5000));
  EXPECT_EQ(tosec_recv(s, buf, sizeof buf, 0), 0);  // EOF
  EXPECT_EQ(tosec_close(s), 0);
}

TEST_F(E2E, PollReflectsReadiness) {
  auto [c, s] = tcp_pair();
  const int fl = fcntl(s, F_GETFL);
  ASSERT_EQ(tosec_fcntl_setfl(s, fl | O_NONBLOCK), 0);
  EXPECT_NE(fcntl(s, F_GETFL) & O_NONBLOCK, 0);  // applied to the placeholder itself
  char buf[64];
  EXPECT_EQ(tosec_recv(s, buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_FALSE(readable(s, 100));
  ASSERT_EQ(tosec_send(c, "ping", 4, 0), 4);
  ASSERT_TRUE(readable(s, 5000));
  int avail = 0;
  EXPECT_EQ(tosec_ioctl(s, FIONREAD, &avail), 0);
  EXPECT_EQ(avail, 4);
  EXPECT_EQ(tosec_recv(s, buf, sizeof buf, MSG_PEEK), 4);
  EXPECT_TRUE(readable(s, 0));  // peek leaves it readable
  EXPECT_EQ(tosec_recv(s, buf, sizeof buf, 0), 4);
  EXPECT_EQ(tosec_recv(s, buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_FALSE(readable(s, 100));  // re-armed: no stale readiness
  pollfd w{c, POLLOUT, 0};
  EXPECT_EQ(poll(&w, 1, 1000), 1);
  tosec_close(c);
  tosec_close(s);
}

TEST_F(E2E, RefusedConnectAndSoError) {
  const int c = tosec_socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(c, 0);
  auto a = loopback(1);  // nothing listens on port 1
  const int r = tosec_connect(c, sa(a), sizeof a);
  if (r != 0) {
    ASSERT_EQ(errno, EINPROGRESS);
    pollfd p{c, POLLOUT, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
  }
  int err = 0;
  socklen_t len = sizeof err;
  ASSERT_EQ(tosec_getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, ECONNREFUSED);
  ASSERT_EQ(tosec_getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, 0);  // read-and-clear
  int type = 0;
  len = sizeof type;
  ASSERT_EQ(tosec_getsockopt(c, SOL_SOCKET, SO_TYPE, &type, &len), 0);
  EXPECT_EQ(type, SOCK_STREAM);
  tosec_close(c);
}

TEST_F(E2E, UdpDatagrams) {
  const int a = tosec_socket(AF_INET, SOCK_DGRAM, 0);
  const int b = tosec_socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  auto aa = loopback(0);
  auto ba = loopback(0);
  ASSERT_EQ(tosec_bind(a, sa(aa), sizeof aa), 0);
  ASSERT_EQ(tosec_bind(b, sa(ba), sizeof ba), 0);
  socklen_t len = sizeof aa;
  ASSERT_EQ(tosec_getsockname(a, reinterpret_cast<sockaddr*>(&aa), &len), 0);
  len = sizeof ba;
  ASSERT_EQ(tosec_getsockname(b, reinterpret_cast<sockaddr*>(&ba), &len), 0);
  ASSERT_EQ(tosec_sendto(b, "one", 3, 0, sa(aa), sizeof aa), 3);
  ASSERT_EQ(tosec_sendto(b, "twotwo", 6, 0, sa(aa), sizeof aa), 6);
  ASSERT_TRUE(readable(a, 5000));
  char buf[16];
  sockaddr_in from{};
  len = sizeof from;
  EXPECT_EQ(tosec_recvfrom(a, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len), 3);
  EXPECT_EQ(from.sin_port, ba.sin_port);
  EXPECT_EQ(tosec_recv(a, buf, 2, MSG_TRUNC), 6);  // real length, truncated copy
  tosec_close(a);
  tosec_close(b);
}

TEST_F(E2E, CloseFromAnotherThreadWakesBlockedRecv) {
  auto [c, s] = tcp_pair();
  int result = 0;
  int err = 0;
  std::thread t([&, fd = s] {
    char b[8];
    result = static_cast<int>(tosec_recv(fd, b, sizeof b, 0));
    err = errno;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  tosec_close(s);
  t.join();  // bounded by the test timeout
  EXPECT_EQ(result, -1);
  EXPECT_EQ(err, EBADF);
  tosec_close(c);
}

}  // namespace
