// The connection loop both stacks run: connect, one SIZE-byte request, the SIZE-byte answer
// (`tosec-crr-steps serve` echoes it), close; the next connection starts when the answer is in,
// as netperf TCP_CRR does. Each step is timed; the process's CPU time is read around the loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tosec::eval {

struct CrrResult {
  std::vector<double> connect_us, answer_us, close_us;  // per connection
  double seconds = 0;                                   // wall time of the timed loop
  double cpu_seconds = 0;                               // user + system, whole process
  // The part of the wall time spent working: kernel, the CPU time (its calls block); lwip, the
  // loop iterations that received or sent a frame or opened a connection (the rest is polling).
  double work_seconds = 0;
  long failed = 0;    // connections that ended in an error
  std::string error;  // why the loop stopped early
};

struct CrrSpec {
  std::uint32_t peer_ip = 0;   // IPv4, network byte order
  std::uint16_t port = 0;      // host byte order
  std::uint32_t local_ip = 0;  // kernel: bind to it first (0: let connect() choose)
  long connections = 5000;
  std::size_t size = 64;
};

// The local kernel stack: socket, [bind to local_ip,] connect, send, recv, close (blocking).
CrrResult run_kernel_crr(const CrrSpec& spec);

// lwIP (raw API, one thread, busy polling) on a DPDK af_packet port on `iface`, with the IPv4
// address `local_ip` (network byte order, /24) on it.
CrrResult run_lwip_crr(const CrrSpec& spec, const std::string& iface, std::uint32_t local_ip);

double cpu_seconds_now();

}  // namespace tosec::eval
