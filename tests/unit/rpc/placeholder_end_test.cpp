// PlaceholderEnd: the readiness mirror's operations on end B, observed from end A the way the
// shim and a poller see it.
#include "tosec/rpc/placeholder_end.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <vector>

#include "tosec/rpc/guest_channel.h"

namespace tosec::rpc {
namespace {

struct Pair {
  UniqueFd a;
  PlaceholderEnd b;
};

Pair make_pair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  auto b = PlaceholderEnd::adopt(UniqueFd(sv[1]));
  EXPECT_TRUE(b.ok());
  return {UniqueFd(sv[0]), std::move(*b)};
}

short revents(int fd, short events) {
  pollfd p{fd, events, 0};
  EXPECT_GE(::poll(&p, 1, 0), 0);
  return p.revents;
}

// Blocks A's writability as the shim does (socket_ops.cpp fill_placeholder): a small send
// buffer, 2 KiB of junk, then the sentinel as a 1-byte send of its own.
void block_writability(int a) {
  const int snd = 4096;
  ASSERT_EQ(::setsockopt(a, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd), 0);
  static const std::array<char, 2048> junk{};
  ASSERT_EQ(::send(a, junk.data(), junk.size(), MSG_DONTWAIT | MSG_NOSIGNAL), 2048);
  const char s = kPlaceholderSentinel;
  ASSERT_EQ(::send(a, &s, 1, MSG_DONTWAIT | MSG_NOSIGNAL), 1);
}

TEST(PlaceholderEnd, AdoptRejectsABadDescriptor) {
  auto b = PlaceholderEnd::adopt(UniqueFd(-1));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, EBADF);
}

TEST(PlaceholderEnd, NothingBlocksOnABlockingB) {
  auto p = make_pair();  // B keeps the blocking mode socketpair() gave it: adopt() sets no flag
  ASSERT_EQ(::fcntl(p.b.fd(), F_GETFL) & O_NONBLOCK, 0);
  // A full B must never block the holder: signal() on a B whose peer never reads returns.
  for (int i = 0; i < 1'000'000 && (revents(p.b.fd(), POLLOUT) & POLLOUT) != 0; ++i) p.b.signal();
  EXPECT_EQ(revents(p.b.fd(), POLLOUT) & POLLOUT, 0);
  p.b.signal();  // would hang here if the send waited
  EXPECT_NE(revents(p.a.get(), POLLIN) & POLLIN, 0);
}

TEST(PlaceholderEnd, SignalMakesAReadable) {
  auto p = make_pair();
  EXPECT_EQ(revents(p.a.get(), POLLIN) & POLLIN, 0);
  p.b.signal();
  EXPECT_NE(revents(p.a.get(), POLLIN) & POLLIN, 0);
}

TEST(PlaceholderEnd, ShutWriteShowsRdhupOnAButKeepsBOpen) {
  auto p = make_pair();
  p.b.shut_write();
  EXPECT_NE(revents(p.a.get(), POLLIN | POLLRDHUP) & POLLRDHUP, 0);
  char c;
  EXPECT_EQ(::recv(p.a.get(), &c, 1, MSG_DONTWAIT), 0);
  // B still takes the guest's junk (writability) and has not hung up.
  EXPECT_EQ(::send(p.a.get(), "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL), 1);
  EXPECT_EQ(revents(p.b.fd(), POLLIN | POLLRDHUP) & (POLLHUP | POLLRDHUP), 0);
}

TEST(PlaceholderEnd, DrainMakesAWritableAndKeepsTheSentinel) {
  auto p = make_pair();
  block_writability(p.a.get());
  EXPECT_EQ(revents(p.a.get(), POLLOUT) & POLLOUT, 0);
  std::vector<std::byte> scratch(65536);
  p.b.drain_keep_sentinel(scratch);
  EXPECT_NE(revents(p.a.get(), POLLOUT) & POLLOUT, 0);
  // Exactly the sentinel is left in B.
  char c = 0;
  EXPECT_EQ(::recv(p.b.fd(), &c, 1, MSG_DONTWAIT | MSG_PEEK), 1);
  EXPECT_EQ(c, kPlaceholderSentinel);
}

TEST(PlaceholderEnd, DrainWithoutSentinelEmptiesB) {
  auto p = make_pair();
  ASSERT_EQ(::send(p.a.get(), "junk", 4, MSG_DONTWAIT), 4);
  std::vector<std::byte> scratch(16);
  p.b.drain_keep_sentinel(scratch);
  char c;
  EXPECT_EQ(::recv(p.b.fd(), &c, 1, MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, EAGAIN);
}

TEST(PlaceholderEnd, ClosingBOverTheSentinelResetsA) {
  // The dead-connection mirror: B released while it holds an unread byte sets ECONNRESET and
  // a full shutdown on A (POLLERR|POLLHUP), as a reset kernel TCP socket reports.
  auto p = make_pair();
  const char s = kPlaceholderSentinel;
  ASSERT_EQ(::send(p.a.get(), &s, 1, MSG_DONTWAIT), 1);
  p.b.reset();
  EXPECT_FALSE(p.b.valid());
  const short r = revents(p.a.get(), POLLIN | POLLOUT);
  EXPECT_NE(r & POLLERR, 0);
  EXPECT_NE(r & POLLHUP, 0);
  int err = 0;
  socklen_t len = sizeof err;
  ASSERT_EQ(::getsockopt(p.a.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, ECONNRESET);
}

TEST(PlaceholderEnd, OperationsOnAnEmptyEndAreNoOps) {
  PlaceholderEnd none;
  EXPECT_FALSE(none.valid());
  std::vector<std::byte> scratch(16);
  none.signal();
  none.shut_write();
  none.drain_keep_sentinel(scratch);
}

}  // namespace
}  // namespace tosec::rpc
