#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "crr_loop.h"
#include "recv_all.h"

namespace tosec::eval {
namespace {
using Clock = std::chrono::steady_clock;
double us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// The client closes first, so each connection leaves a TIME_WAIT here for a minute. Thousands of
// them slow connect()'s search for a free port; a run bound to a source address of its own
// starts with none, as a fresh lwIP does. IP_BIND_ADDRESS_NO_PORT leaves the port to connect().
bool bind_source(int fd, std::uint32_t ip) {
  if (ip == 0) return true;
  const int one = 1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = ip;
  return ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) == 0 &&
         ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
}
}  // namespace

CrrResult run_kernel_crr(const CrrSpec& spec) {
  CrrResult r;
  std::vector<char> buf(spec.size, 'x');
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_addr.s_addr = spec.peer_ip;
  peer.sin_port = htons(spec.port);
  const double cpu0 = cpu_seconds_now();
  const auto begin = Clock::now();
  for (long i = 0; i < spec.connections; ++i) {
    const auto t0 = Clock::now();
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || !bind_source(fd, spec.local_ip) ||
        ::connect(fd, reinterpret_cast<const sockaddr*>(&peer), sizeof peer) != 0) {
      r.error = std::string("connect: ") + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      break;
    }
    const auto t1 = Clock::now();
    const bool ok =
        ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(buf.size()) &&
        recv_all(fd, buf.data(), buf.size());
    const auto t2 = Clock::now();
    ::close(fd);
    const auto t3 = Clock::now();
    if (!ok) {
      ++r.failed;
      continue;
    }
    r.connect_us.push_back(us(t0, t1));
    r.answer_us.push_back(us(t1, t2));
    r.close_us.push_back(us(t2, t3));
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  r.cpu_seconds = cpu_seconds_now() - cpu0;
  r.work_seconds = r.cpu_seconds;
  return r;
}

}  // namespace tosec::eval
