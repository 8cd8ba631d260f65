// Wire-level tests of ivshmem::send_msg / recv_msg over socketpairs.
#include "tosec/rpc/ivshmem_protocol.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <future>
#include <thread>

#include "tosec/rpc/doorbell.h"

namespace tosec::rpc {
namespace {

using namespace std::chrono_literals;

struct Pair {
  UniqueFd a, b;
};

Pair make_pair() {
  int fds[2] = {-1, -1};
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// Sends raw bytes with `nfds` copies of `fd` attached, bypassing send_msg.
void send_raw(int sock, const void* data, std::size_t len, int fd = -1, int nfds = 1) {
  iovec iov{const_cast<void*>(data), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * 32)] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<std::size_t>(nfds));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<std::size_t>(nfds));
    for (std::size_t i = 0; i < static_cast<std::size_t>(nfds); ++i) {
      std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof fd);
    }
  }
  ASSERT_EQ(::sendmsg(sock, &msg, 0), static_cast<ssize_t>(len));
}

ino_t inode_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

TEST(IvshmemProtocol, RoundTripWithoutFd) {
  auto p = make_pair();
  for (std::int64_t v : {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1}, std::int64_t{65535},
                         INT64_MIN, INT64_MAX}) {
    ASSERT_TRUE(ivshmem::send_msg(p.a.get(), v).ok());
    auto m = ivshmem::recv_msg(p.b.get(), 1000);
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_EQ(m->value, v);
    EXPECT_FALSE(m->fd.valid());
  }
}

TEST(IvshmemProtocol, RoundTripWithFdIsCloexec) {
  auto p = make_pair();
  auto efd = make_eventfd();
  ASSERT_TRUE(efd.ok());
  ASSERT_TRUE(ivshmem::send_msg(p.a.get(), 7, efd->get()).ok());
  auto m = ivshmem::recv_msg(p.b.get(), 1000);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->value, 7);
  ASSERT_TRUE(m->fd.valid());
  EXPECT_NE(m->fd.get(), efd->get());
  EXPECT_EQ(inode_of(m->fd.get()), inode_of(efd->get()));
  EXPECT_NE(::fcntl(m->fd.get(), F_GETFD) & FD_CLOEXEC, 0) << "received fds must be CLOEXEC";
}

TEST(IvshmemProtocol, WireFormatIsLittleEndianInt64) {
  auto p = make_pair();
  ASSERT_TRUE(ivshmem::send_msg(p.a.get(), 0x0102030405060708).ok());
  ASSERT_TRUE(ivshmem::send_msg(p.a.get(), -1).ok());
  std::array<unsigned char, 16> got{};
  ASSERT_EQ(::recv(p.b.get(), got.data(), got.size(), MSG_WAITALL), 16);
  const std::array<unsigned char, 16> want{8,    7,    6,    5,    4,    3,    2,    1,
                                           0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(got, want);
}

TEST(IvshmemProtocol, ReassemblesPartialMessagesAndKeepsTheFd) {
  auto p = make_pair();
  auto efd = make_eventfd();
  ASSERT_TRUE(efd.ok());
  const unsigned char bytes[8] = {0x2a, 0, 0, 0, 0, 0, 0, 0};
  send_raw(p.a.get(), bytes, 3, efd->get());  // the fd rides on the first fragment
  auto fut = std::async(std::launch::async, [&] { return ivshmem::recv_msg(p.b.get(), 10000); });
  std::this_thread::sleep_for(50ms);
  send_raw(p.a.get(), bytes + 3, 5);
  auto m = fut.get();
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->value, 42);
  ASSERT_TRUE(m->fd.valid());
  EXPECT_EQ(inode_of(m->fd.get()), inode_of(efd->get()));
}

TEST(IvshmemProtocol, EofBeforeAMessageIsConnectionReset) {
  auto p = make_pair();
  p.a.reset();
  auto m = ivshmem::recv_msg(p.b.get(), 1000);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ECONNRESET);
}

TEST(IvshmemProtocol, EofMidMessageIsShortMessage) {
  auto p = make_pair();
  const unsigned char bytes[3] = {1, 2, 3};
  send_raw(p.a.get(), bytes, 3);
  p.a.reset();
  auto m = ivshmem::recv_msg(p.b.get(), 1000);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EPROTO);
  EXPECT_NE(m.error().message.find("short message"), std::string::npos) << m.error().message;
  EXPECT_NE(m.error().message.find("3 of 8"), std::string::npos) << m.error().message;
}

TEST(IvshmemProtocol, TwoFdsAreRejectedAndBothClosed) {
  auto p = make_pair();
  auto efd = make_eventfd();
  ASSERT_TRUE(efd.ok());
  const std::int64_t v = 5;
  const std::size_t before = open_fd_count();
  send_raw(p.a.get(), &v, sizeof v, efd->get(), 2);
  auto m = ivshmem::recv_msg(p.b.get(), 1000);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EPROTO);
  EXPECT_NE(m.error().message.find("2 fds"), std::string::npos) << m.error().message;
  EXPECT_EQ(open_fd_count(), before) << "fds of a rejected message leaked";
}

TEST(IvshmemProtocol, TooManyFdsIsTruncationError) {
  auto p = make_pair();
  auto efd = make_eventfd();
  ASSERT_TRUE(efd.ok());
  const std::int64_t v = 5;
  const std::size_t before = open_fd_count();
  send_raw(p.a.get(), &v, sizeof v, efd->get(), 30);
  auto m = ivshmem::recv_msg(p.b.get(), 1000);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EPROTO);
  EXPECT_NE(m.error().message.find("truncated"), std::string::npos) << m.error().message;
  EXPECT_EQ(open_fd_count(), before);
}

TEST(IvshmemProtocol, ForeignControlMessageIsRejected) {
  auto p = make_pair();
  const int on = 1;
  // With SO_PASSCRED every message carries SCM_CREDENTIALS, which the protocol never uses.
  ASSERT_EQ(::setsockopt(p.b.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
  ASSERT_TRUE(ivshmem::send_msg(p.a.get(), 3).ok());
  auto m = ivshmem::recv_msg(p.b.get(), 1000);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, EPROTO);
  EXPECT_NE(m.error().message.find("unexpected control message"), std::string::npos)
      << m.error().message;
}

TEST(IvshmemProtocol, TryRecvReturnsNothingWhenIdle) {
  auto p = make_pair();
  auto m = ivshmem::try_recv_msg(p.b.get());
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_FALSE(m->has_value());
  ASSERT_TRUE(ivshmem::send_msg(p.a.get(), 9).ok());
  m = ivshmem::try_recv_msg(p.b.get());
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(m->has_value());
  EXPECT_EQ((*m)->value, 9);
}

TEST(IvshmemProtocol, RecvTimesOut) {
  auto p = make_pair();
  const auto t0 = std::chrono::steady_clock::now();
  auto m = ivshmem::recv_msg(p.b.get(), 100);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ETIMEDOUT);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 90ms);
}

extern "C" void ignore_signal(int) {}

TEST(IvshmemProtocol, SignalsDoNotInterruptAReceive) {
  struct sigaction sa {};
  sa.sa_handler = ignore_signal;  // no SA_RESTART: poll and recvmsg see EINTR
  sigemptyset(&sa.sa_mask);
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  auto p = make_pair();
  std::promise<pthread_t> tid;
  auto fut = std::async(std::launch::async, [&] {
    tid.set_value(::pthread_self());
    return ivshmem::recv_msg(p.b.get(), 10000);
  });
  const pthread_t t = tid.get_future().get();
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(10ms);
    ::pthread_kill(t, SIGUSR1);
  }
  ASSERT_TRUE(ivshmem::send_msg(p.a.get(), 11).ok());
  auto m = fut.get();
  ::sigaction(SIGUSR1, &old, nullptr);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->value, 11);
}

TEST(IvshmemProtocol, TrySendReportsAFullSocketAndSendTimesOut) {
  auto p = make_pair();
  std::size_t sent = 0;
  for (;;) {
    auto r = ivshmem::try_send_msg(p.a.get(), 1);
    ASSERT_TRUE(r.ok()) << r.error().message;
    if (!*r) break;
    ASSERT_LT(++sent, 1'000'000U) << "socket never filled";
  }
  EXPECT_GT(sent, 0U);
  auto s = ivshmem::send_msg(p.a.get(), 1, -1, 50);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ETIMEDOUT);
  // Everything that was accepted arrives intact.
  for (std::size_t i = 0; i < sent; ++i) {
    auto m = ivshmem::recv_msg(p.b.get(), 1000);
    ASSERT_TRUE(m.ok()) << i << ": " << m.error().message;
    ASSERT_EQ(m->value, 1);
  }
}

TEST(IvshmemProtocol, SendToClosedPeerIsEpipeNotSigpipe) {
  auto p = make_pair();
  p.b.reset();
  auto s = ivshmem::send_msg(p.a.get(), 1);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), EPIPE);
}

}  // namespace
}  // namespace tosec::rpc
