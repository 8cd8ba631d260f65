// tosec-userstack-crr: how fast a user-space TCP/IP stack (lwIP on a DPDK af_packet port) opens,
// uses and closes short connections on this machine, against the local kernel stack doing the
// same loop. It answers one question before anyone builds the `dpdk` stack backend: how much of
// the TCP_CRR gap between the TOE and the local stack a user-space stack could close here. It is
// a probe, not the backend: no sockets API, one connection at a time. eval/userstack/compare runs
// both modes against `tosec-crr-steps serve` in a namespace; decision 0015 has the results.
#include <arpa/inet.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>

#include "crr_loop.h"
#include "parse_number.h"

namespace tosec::eval {

double cpu_seconds_now() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace tosec::eval

namespace {
using tosec::eval::CrrResult;
using tosec::eval::CrrSpec;

int usage() {
  std::fputs(
      "usage: tosec-userstack-crr kernel [--from LOCAL_IP] PEER_IP PORT [CONNECTIONS [SIZE]]\n"
      "       tosec-userstack-crr lwip IFACE LOCAL_IP PEER_IP PORT [CONNECTIONS [SIZE]]\n"
      "  CONNECTIONS (default 5000, lwip at most 15000: its TIME_WAIT lasts 2 minutes) of one\n"
      "  SIZE-byte (default 64) request and answer each, against `tosec-crr-steps serve PORT`.\n"
      "  lwip: IFACE is a Linux interface without an IPv4 address (a veth end), LOCAL_IP the\n"
      "  address lwIP takes on it (/24); needs root. kernel --from: bind each socket to\n"
      "  LOCAL_IP (a source address with no TIME_WAIT of earlier runs).\n",
      stderr);
  return 2;
}

bool parse_ip(const char* what, const char* s, std::uint32_t& out) {
  in_addr a{};
  if (::inet_pton(AF_INET, s, &a) != 1) {
    std::fprintf(stderr, "tosec-userstack-crr: %s '%s' is not an IPv4 address\n", what, s);
    return false;
  }
  out = a.s_addr;
  return true;
}

double p50(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

int report(const CrrResult& r, long connections) {
  const long ok = static_cast<long>(r.connect_us.size());
  if (!r.error.empty()) {
    std::fprintf(stderr, "tosec-userstack-crr: %s (after %ld connections)\n", r.error.c_str(), ok);
    return 1;
  }
  if (r.failed > 0 || ok != connections) {
    std::fprintf(stderr, "tosec-userstack-crr: %ld of %ld connections failed\n", connections - ok,
                 connections);
    return 1;
  }
  std::printf("step        p50 us\n");
  std::printf("connect   %8.1f\n", p50(r.connect_us));
  std::printf("send+recv %8.1f\n", p50(r.answer_us));
  std::printf("close     %8.1f\n", p50(r.close_us));
  std::printf(
      "per connection %.1f us, %.0f connections/s, CPU %.1f us per connection, work %.1f us per "
      "connection\n",
      1e6 * r.seconds / static_cast<double>(ok), static_cast<double>(ok) / r.seconds,
      1e6 * r.cpu_seconds / static_cast<double>(ok),
      1e6 * r.work_seconds / static_cast<double>(ok));
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string_view mode = argv[1];
  const bool from = mode == "kernel" && argc > 3 && std::string_view(argv[2]) == "--from";
  const int first = mode == "kernel" ? (from ? 4 : 2) : mode == "lwip" ? 4 : -1;  // PEER_IP
  if (first < 0 || argc < first + 2 || argc > first + 4) return usage();
  CrrSpec spec;
  if (from && !parse_ip("LOCAL_IP", argv[3], spec.local_ip)) return 2;
  unsigned long port = 0, n = 5000, size = 64;
  const unsigned long max_n = mode == "lwip" ? 15000 : 10'000'000;
  if (!parse_ip("PEER_IP", argv[first], spec.peer_ip)) return 2;
  if (!tosec::eval::parse_ulong(argv[first + 1], 1, 65535, port)) {
    std::fprintf(stderr, "tosec-userstack-crr: PORT '%s' is not 1-65535\n", argv[first + 1]);
    return 2;
  }
  if (argc > first + 2 && !tosec::eval::parse_ulong(argv[first + 2], 1, max_n, n)) {
    std::fprintf(stderr, "tosec-userstack-crr: CONNECTIONS '%s' is not 1-%lu\n", argv[first + 2],
                 max_n);
    return 2;
  }
  if (argc > first + 3 && !tosec::eval::parse_ulong(argv[first + 3], 1, 1400, size)) {
    std::fprintf(stderr, "tosec-userstack-crr: SIZE '%s' is not 1-1400 (one segment)\n",
                 argv[first + 3]);
    return 2;
  }
  spec.port = static_cast<std::uint16_t>(port);
  spec.connections = static_cast<long>(n);
  spec.size = size;
  if (mode == "kernel") return report(tosec::eval::run_kernel_crr(spec), spec.connections);
  std::uint32_t local = 0;
  if (!parse_ip("LOCAL_IP", argv[3], local)) return 2;
  return report(tosec::eval::run_lwip_crr(spec, argv[2], local), spec.connections);
}
