#include "server_options.h"

#include <getopt.h>

#include <bit>
#include <cctype>
#include <charconv>

namespace tosec::host {

using rpc::Error;
using rpc::Result;

Result<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc{} || p == begin) {
    return Error{EINVAL, "invalid size '" + std::string(text) + "' (e.g. 4096, 64K, 4M, 1G)"};
  }
  unsigned shift = 0;
  if (p != end) {
    switch (std::toupper(static_cast<unsigned char>(*p))) {
      case 'B':
        shift = 0;
        break;
      case 'K':
        shift = 10;
        break;
      case 'M':
        shift = 20;
        break;
      case 'G':
        shift = 30;
        break;
      case 'T':
        shift = 40;
        break;
      default:
        return Error{EINVAL, "invalid size suffix in '" + std::string(text) + "' (use K, M, G, T)"};
    }
    ++p;
    if (shift != 0 && p != end && std::toupper(static_cast<unsigned char>(*p)) == 'B') ++p;
    if (p != end) return Error{EINVAL, "trailing characters in size '" + std::string(text) + "'"};
  }
  if (shift != 0 && value > (UINT64_MAX >> shift)) {
    return Error{ERANGE, "size '" + std::string(text) + "' is too large"};
  }
  return value << shift;
}

namespace {

Result<unsigned> parse_vectors(std::string_view text) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || text.empty()) {
    return Error{EINVAL, "-n: cannot parse vector count '" + std::string(text) + "'"};
  }
  if (v > kMaxIvshmemVectors) {
    return Error{EINVAL, "-n: too many vectors: " + std::to_string(v) + " (max is " +
                             std::to_string(kMaxIvshmemVectors) + ", as in QEMU's server)"};
  }
  return v;
}

}  // namespace

Result<ServerOptions> parse_server_options(int argc, char* const argv[]) {
  ServerOptions o;
  optind = 0;  // glibc: 0 fully resets getopt, so the parser can run more than once
  opterr = 0;  // we print our own messages
  int c = 0;
  while ((c = ::getopt(argc, argv, ":hvFRp:S:m:M:l:n:")) != -1) {
    switch (c) {
      case 'h':
        o.help = true;
        break;
      case 'v':
        o.verbose = true;
        break;
      case 'F':
        o.foreground = true;
        break;
      case 'R':
        o.id_policy = IdPolicy::kRoundRobin;
        break;
      case 'p':
        o.pid_file = optarg;
        o.pid_file_given = true;
        break;
      case 'S':
        o.socket_path = optarg;
        break;
      case 'M':
      case 'm':
        o.shm_arg = optarg;
        o.shm_flag = c == 'M' ? ShmFlag::kPosixName : ShmFlag::kNameOrDirectory;
        break;
      case 'l': {
        auto s = parse_size(optarg);
        if (!s) return Error{EINVAL, "-l: " + s.error().message};
        if (*s == 0) return Error{EINVAL, "-l: shared memory size must not be 0"};
        o.shm_size = *s;
        break;
      }
      case 'n': {
        auto v = parse_vectors(optarg);
        if (!v) return v.error();
        o.vectors = *v;
        break;
      }
      case ':':
        return Error{EINVAL,
                     std::string("option -") + static_cast<char>(optopt) + " needs an argument"};
      default:
        return Error{EINVAL, std::string("unknown option -") + static_cast<char>(optopt)};
    }
  }
  if (optind < argc) {
    return Error{EINVAL, std::string("unexpected argument '") + argv[optind] + "'"};
  }
  if (o.help) return o;
  // Same rule as QEMU: verbose output goes to stdout, which a daemon does not have.
  if (o.verbose && !o.foreground) return Error{EINVAL, "-v needs -F (a daemon has no stdout)"};
  if (!std::has_single_bit(o.shm_size)) {
    o.warnings.push_back("size " + std::to_string(o.shm_size) +
                         " is not a power of two; rounding up to " +
                         std::to_string(std::bit_ceil(o.shm_size)) +
                         " as QEMU's ivshmem-server does (the ivshmem PCI BAR must be one)");
  }
  return o;
}

std::string server_usage(std::string_view prog) {
  std::string p(prog);
  return "Usage: " + p +
         " [OPTION]...\n"
         "QEMU-compatible ivshmem server: hands a shared memory region and one eventfd per\n"
         "vector and peer to QEMU ivshmem-doorbell devices and TOSEC processes.\n"
         "  -h            show this help\n"
         "  -v            verbose: log peers joining and leaving on stdout (needs -F)\n"
         "  -F            foreground mode (default: daemonize)\n"
         "  -p PIDFILE    pid file (default /var/run/ivshmem-server.pid; written when\n"
         "                daemonized, or in the foreground if given)\n"
         "  -S PATH       unix socket to listen on (default /tmp/ivshmem_socket)\n"
         "  -M NAME       POSIX shared memory object (default 'ivshmem')\n"
         "  -m DIR|NAME   directory to create the memory in (e.g. a hugetlbfs mount) if DIR\n"
         "                exists, else a POSIX shared memory object name\n"
         "  -l SIZE       size in bytes, K/M/G/T suffixes are 1024-based (default 4M);\n"
         "                rounded up to a power of two\n"
         "  -n VECTORS    interrupt vectors per peer, 0-" +
         std::to_string(kMaxIvshmemVectors) +
         " (default 1)\n"
         "  -R            QEMU's id policy: next id round-robin (default: lowest free id)\n";
}

}  // namespace tosec::host
