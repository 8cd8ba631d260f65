// Load and data integrity: many threads on many sockets, 16 MiB each direction, 1000
// concurrent connections. The echo peer is a forked process (EchoServerProcess), so the data
// crosses a process boundary; under `tosec run` both ends go through the TOE.
// Traps covered: T23 (threads), T13 (a second process), T1 (fd limits), T12 (no mixed-up
// completions: every byte is checked).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sock_util.h"

namespace sem {
namespace {

TEST(Scale, EightThreadsFiftyConnectionsEachEchoWithChecksums) {
  extend_watchdog(300);
  ASSERT_GE(raise_nofile(1024), 1024u);
  EchoServerProcess echo;
  ASSERT_NO_FATAL_FAILURE(echo.start());
  const int kThreads = 8, kConns = 50, kRounds = 4;
  const size_t kChunk = 2048;
  std::atomic<int> ok_threads{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Fd> conns(kConns);
      for (auto& c : conns) {
        ASSERT_NO_FATAL_FAILURE(connect_to(&c, echo.addr())) << "thread " << t;
      }
      std::vector<uint64_t> sent_sum(kConns, kFnvInit), got_sum(kConns, kFnvInit);
      std::vector<char> buf(kChunk);
      for (int r = 0; r < kRounds; ++r) {
        for (int i = 0; i < kConns; ++i) {
          uint64_t seed = static_cast<uint64_t>(t * 1000 + i);
          fill_pattern(seed, static_cast<uint64_t>(r) * kChunk, buf.data(), kChunk);
          sent_sum[static_cast<size_t>(i)] =
              fnv1a(sent_sum[static_cast<size_t>(i)], buf.data(), kChunk);
          ASSERT_NO_FATAL_FAILURE(send_all(conns[static_cast<size_t>(i)].get(), buf.data(), kChunk))
              << "thread " << t << " conn " << i << " round " << r;
        }
        for (int i = 0; i < kConns; ++i) {
          ASSERT_NO_FATAL_FAILURE(
              recv_exact(conns[static_cast<size_t>(i)].get(), buf.data(), kChunk))
              << "thread " << t << " conn " << i << " round " << r;
          got_sum[static_cast<size_t>(i)] =
              fnv1a(got_sum[static_cast<size_t>(i)], buf.data(), kChunk);
        }
      }
      int bad = 0;
      for (int i = 0; i < kConns; ++i) {
        if (sent_sum[static_cast<size_t>(i)] != got_sum[static_cast<size_t>(i)]) ++bad;
      }
      EXPECT_EQ(bad, 0) << "thread " << t << ": " << bad << " of " << kConns
                        << " connections echoed data with a wrong checksum (crossed streams?)";
      for (auto& c : conns) {
        ASSERT_EQ(shutdown(c.get(), SHUT_WR), 0) << err(errno);
        ASSERT_NO_FATAL_FAILURE(expect_eof(c.get())) << "thread " << t;
      }
      if (bad == 0) ok_threads.fetch_add(1);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok_threads.load(), kThreads) << "some threads failed (see above)";
  EXPECT_EQ(echo.stop(), 0) << "echo server process failed";
}

TEST(Scale, SixteenMiBEachDirectionSimultaneouslyWithChecksums) {
  extend_watchdog(300);
  Conn c;
  ASSERT_NO_FATAL_FAILURE(make_conn(&c));
  const size_t kTotal = 16u << 20, kChunk = 64 * 1024;
  // Each side sends 16 MiB while receiving 16 MiB from the other: needs full duplex.
  auto sender = [&](int fd, uint64_t seed, uint64_t* sum) {
    std::vector<char> buf(kChunk);
    uint64_t h = kFnvInit;
    for (size_t off = 0; off < kTotal; off += kChunk) {
      fill_pattern(seed, off, buf.data(), kChunk);
      h = fnv1a(h, buf.data(), kChunk);
      ASSERT_NO_FATAL_FAILURE(send_all(fd, buf.data(), kChunk)) << "at offset " << off;
    }
    *sum = h;
  };
  auto receiver = [&](int fd, uint64_t seed, uint64_t* sum, size_t* first_bad) {
    std::vector<char> buf(kChunk), want(kChunk);
    uint64_t h = kFnvInit;
    *first_bad = SIZE_MAX;
    for (size_t off = 0; off < kTotal; off += kChunk) {
      ASSERT_NO_FATAL_FAILURE(recv_exact(fd, buf.data(), kChunk)) << "at offset " << off;
      h = fnv1a(h, buf.data(), kChunk);
      if (*first_bad == SIZE_MAX) {
        fill_pattern(seed, off, want.data(), kChunk);
        for (size_t i = 0; i < kChunk; ++i) {
          if (buf[i] != want[i]) {
            *first_bad = off + i;
            break;
          }
        }
      }
    }
    *sum = h;
  };
  uint64_t s_up = 0, s_down = 0, r_up = 1, r_down = 1;
  size_t bad_up = 0, bad_down = 0;
  std::thread t1([&] { sender(c.client.get(), 101, &s_up); });
  std::thread t2([&] { sender(c.server.get(), 202, &s_down); });
  std::thread t3([&] { receiver(c.server.get(), 101, &r_up, &bad_up); });
  receiver(c.client.get(), 202, &r_down, &bad_down);
  t1.join();
  t2.join();
  t3.join();
  EXPECT_EQ(bad_up, SIZE_MAX) << "client->server stream corrupted at byte " << bad_up;
  EXPECT_EQ(bad_down, SIZE_MAX) << "server->client stream corrupted at byte " << bad_down;
  EXPECT_EQ(s_up, r_up) << "client->server checksum mismatch over 16 MiB";
  EXPECT_EQ(s_down, r_down) << "server->client checksum mismatch over 16 MiB";
}

TEST(Scale, SixteenMiBEchoedThroughAnotherProcess) {
  extend_watchdog(300);
  EchoServerProcess echo;
  ASSERT_NO_FATAL_FAILURE(echo.start());
  Fd c;
  ASSERT_NO_FATAL_FAILURE(connect_to(&c, echo.addr()));
  const size_t kTotal = 16u << 20, kChunk = 64 * 1024;
  uint64_t sent = 0, got = 1;
  std::thread tx([&] {
    std::vector<char> buf(kChunk);
    uint64_t h = kFnvInit;
    for (size_t off = 0; off < kTotal; off += kChunk) {
      fill_pattern(55, off, buf.data(), kChunk);
      h = fnv1a(h, buf.data(), kChunk);
      ASSERT_NO_FATAL_FAILURE(send_all(c.get(), buf.data(), kChunk));
    }
    sent = h;
    shutdown(c.get(), SHUT_WR);
  });
  std::vector<char> buf(kChunk);
  uint64_t h = kFnvInit;
  for (size_t off = 0; off < kTotal; off += kChunk) {
    ASSERT_NO_FATAL_FAILURE(recv_exact(c.get(), buf.data(), kChunk)) << "at offset " << off;
    h = fnv1a(h, buf.data(), kChunk);
  }
  got = h;
  tx.join();
  EXPECT_EQ(sent, got) << "16 MiB echoed by another process came back with a wrong checksum";
  ASSERT_NO_FATAL_FAILURE(expect_eof(c.get()));
  EXPECT_EQ(echo.stop(), 0);
}

TEST(Scale, ThousandConcurrentConnectionsEachExchangeData) {
  extend_watchdog(300);
  const int kConns = 1000;
  // Two fds per connection in the worst case (both ends in one process) plus slack.
  uint64_t lim = raise_nofile(2 * kConns + 256);
  ASSERT_GE(lim, static_cast<uint64_t>(2 * kConns + 256))
      << "cannot raise RLIMIT_NOFILE far enough (hard limit too low)";
  EchoServerProcess echo;  // forked after the raise, so it inherits the limit
  ASSERT_NO_FATAL_FAILURE(echo.start());
  std::vector<Fd> conns(kConns);
  for (int i = 0; i < kConns; ++i) {
    ASSERT_NO_FATAL_FAILURE(connect_to(&conns[static_cast<size_t>(i)], echo.addr()))
        << "connection " << i;
  }
  const size_t kMsg = 1024;
  std::vector<char> buf(kMsg);
  for (int i = 0; i < kConns; ++i) {
    fill_pattern(static_cast<uint64_t>(9000 + i), 0, buf.data(), kMsg);
    ASSERT_NO_FATAL_FAILURE(send_all(conns[static_cast<size_t>(i)].get(), buf.data(), kMsg))
        << "connection " << i;
  }
  // Collect every echo with one poll() over all 1000 sockets.
  std::vector<std::vector<char>> got(kConns);
  std::vector<pollfd> pfds(kConns);
  for (int i = 0; i < kConns; ++i)
    pfds[static_cast<size_t>(i)] = {conns[static_cast<size_t>(i)].get(), POLLIN, 0};
  int complete = 0;
  Deadline d(kIoTimeoutMs * 3);
  while (complete < kConns && !d.expired()) {
    int n = poll(pfds.data(), pfds.size(), d.left_ms());
    ASSERT_GE(n, 0) << "poll over 1000 sockets: " << err(errno);
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (pfds[i].fd < 0 || !pfds[i].revents) continue;
      char tmp[kMsg];
      ssize_t r = recv(pfds[i].fd, tmp, kMsg - got[i].size(), MSG_DONTWAIT);
      if (r < 0 && errno == EAGAIN) continue;
      ASSERT_GT(r, 0) << "connection " << i << ": " << (r == 0 ? "EOF" : err(errno)) << " after "
                      << got[i].size() << " bytes";
      got[i].insert(got[i].end(), tmp, tmp + r);
      if (got[i].size() == kMsg) {
        pfds[i].fd = -1;
        ++complete;
      }
    }
  }
  ASSERT_EQ(complete, kConns) << "only " << complete << " of " << kConns
                              << " connections got their echo back";
  int bad = 0;
  for (int i = 0; i < kConns; ++i) {
    fill_pattern(static_cast<uint64_t>(9000 + i), 0, buf.data(), kMsg);
    if (std::memcmp(buf.data(), got[static_cast<size_t>(i)].data(), kMsg) != 0) ++bad;
  }
  EXPECT_EQ(bad, 0) << bad << " of " << kConns << " connections got someone else's data";
  conns.clear();
  EXPECT_EQ(echo.stop(), 0);
}

}  // namespace
}  // namespace sem
