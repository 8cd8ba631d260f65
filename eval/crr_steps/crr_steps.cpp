// tosec-crr-steps: where the time of one short TCP connection goes, step by step.
//
// `run` does what netperf TCP_CRR does for each connection (socket, getsockopt SO_SNDBUF and
// SO_RCVBUF, setsockopt SO_REUSEADDR, bind to the next local port, connect, send a request,
// receive the answer, close) N times and prints the median and 90th percentile of each step
// and the connections per second. `serve` is its peer: one connection at a time, it reads the
// request, sends it back and waits for the client's close. Run `run` under `tosec run --` to
// see the offloaded path and without it for the local stack (eval/crr_steps/steps does both,
// interleaved, against a server in a namespace). Decisions 0012 and 0014 quote its figures.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "parse_number.h"
#include "recv_all.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::array<const char*, 7> kSteps = {"socket",  "getsockopt x2", "setsockopt", "bind",
                                               "connect", "send+recv",     "close"};

int usage() {
  std::fputs(
      "usage: tosec-crr-steps serve PORT [SIZE]\n"
      "       tosec-crr-steps run HOST PORT [CONNECTIONS [SIZE]]\n"
      "  run: CONNECTIONS (default 5000) connections of one SIZE-byte (default 64) request and\n"
      "  answer each, timed per step; serve: the echo peer, one connection at a time.\n",
      stderr);
  return 2;
}

int serve(unsigned short port, std::size_t size) {
  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 128) != 0) {
    std::fprintf(stderr, "tosec-crr-steps: listen on port %u: %s\n", port, std::strerror(errno));
    return 1;
  }
  std::vector<char> buf(std::max<std::size_t>(size, 4096));
  for (;;) {
    const int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    if (tosec::eval::recv_all(c, buf.data(), size))
      (void)!::send(c, buf.data(), size, MSG_NOSIGNAL);
    while (::recv(c, buf.data(), buf.size(), 0) > 0) {
    }
    ::close(c);
  }
}

double us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

double percentile(std::vector<double>& v, double p) {
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

int run(const char* host, unsigned short port, std::size_t n, std::size_t size) {
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(port);
  if (::inet_pton(AF_INET, host, &peer.sin_addr) != 1) {
    std::fprintf(stderr, "tosec-crr-steps: %s is not an IPv4 address\n", host);
    return 2;
  }
  std::array<std::vector<double>, kSteps.size()> t;
  for (auto& v : t) v.reserve(n);
  std::vector<char> buf(size, 'x');
  unsigned short local_port = 20000;
  const auto start = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    std::array<Clock::time_point, kSteps.size() + 1> at;
    at[0] = Clock::now();
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
      std::fprintf(stderr, "tosec-crr-steps: socket: %s\n", std::strerror(errno));
      return 1;
    }
    at[1] = Clock::now();
    int v = 0;
    socklen_t vl = sizeof v;
    (void)::getsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, &vl);
    vl = sizeof v;
    (void)::getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &vl);
    at[2] = Clock::now();
    const int one = 1;
    (void)::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    at[3] = Clock::now();
    sockaddr_in me{};
    me.sin_family = AF_INET;
    for (int tries = 0;; ++tries) {  // as netperf: the next port, again while it is in use
      me.sin_port = htons(local_port);
      local_port = local_port >= 60000 ? 20000 : static_cast<unsigned short>(local_port + 1);
      if (::bind(s, reinterpret_cast<sockaddr*>(&me), sizeof me) == 0) break;
      if (errno != EADDRINUSE || tries > 40000) {
        std::fprintf(stderr, "tosec-crr-steps: bind: %s\n", std::strerror(errno));
        return 1;
      }
    }
    at[4] = Clock::now();
    if (::connect(s, reinterpret_cast<sockaddr*>(&peer), sizeof peer) != 0) {
      std::fprintf(stderr, "tosec-crr-steps: connect to %s:%u: %s\n", host, port,
                   std::strerror(errno));
      return 1;
    }
    at[5] = Clock::now();
    if (::send(s, buf.data(), size, MSG_NOSIGNAL) != static_cast<ssize_t>(size) ||
        !tosec::eval::recv_all(s, buf.data(), size)) {
      std::fprintf(stderr, "tosec-crr-steps: request/answer %zu failed\n", i);
      return 1;
    }
    at[6] = Clock::now();
    ::close(s);
    at[7] = Clock::now();
    for (std::size_t k = 0; k < kSteps.size(); ++k) t[k].push_back(us(at[k], at[k + 1]));
  }
  const double total = us(start, Clock::now());
  std::printf("%-14s %8s %8s   (%zu connections of %zu B)\n", "step", "p50 us", "p90 us", n, size);
  for (std::size_t k = 0; k < kSteps.size(); ++k) {
    std::printf("%-14s %8.1f %8.1f\n", kSteps[k], percentile(t[k], 0.5), percentile(t[k], 0.9));
  }
  std::printf("per connection %.1f us, %.0f connections/s\n", total / static_cast<double>(n),
              static_cast<double>(n) / total * 1e6);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string_view cmd = argv[1];
  unsigned long port = 0;
  unsigned long size = 64;
  if (cmd == "serve" && (argc == 3 || argc == 4)) {
    if (!tosec::eval::parse_ulong(argv[2], 1, 65535, port) ||
        (argc == 4 && !tosec::eval::parse_ulong(argv[3], 1, 1 << 20, size))) {
      return usage();
    }
    return serve(static_cast<unsigned short>(port), size);
  }
  unsigned long n = 5000;
  if (cmd == "run" && argc >= 4 && argc <= 6) {
    if (!tosec::eval::parse_ulong(argv[3], 1, 65535, port) ||
        (argc >= 5 && !tosec::eval::parse_ulong(argv[4], 1, 100'000'000, n)) ||
        (argc == 6 && !tosec::eval::parse_ulong(argv[5], 1, 1 << 20, size))) {
      return usage();
    }
    return run(argv[2], static_cast<unsigned short>(port), n, size);
  }
  return usage();
}
