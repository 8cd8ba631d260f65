// Command line of tosec-ivshmem-server: QEMU ivshmem-server's flags, parsed with getopt.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ivshmem_server.h"
#include "shm_backing.h"
#include "tosec/rpc/status.h"

namespace tosec::host {

struct ServerOptions {
  std::string socket_path = "/tmp/ivshmem_socket";       // -S
  ShmFlag shm_flag = ShmFlag::kPosixName;                // -M / -m
  std::string shm_arg = "ivshmem";                       // QEMU's default object name
  std::uint64_t shm_size = std::uint64_t{4} << 20;       // -l, QEMU's default 4 MiB
  unsigned vectors = 1;                                  // -n
  bool foreground = false;                               // -F (default: daemonize)
  std::string pid_file = "/var/run/ivshmem-server.pid";  // -p
  bool pid_file_given = false;
  bool verbose = false;                        // -v
  IdPolicy id_policy = IdPolicy::kLowestFree;  // -R: QEMU's round-robin ids
  bool help = false;                           // -h
  std::vector<std::string> warnings;           // to print on stderr before starting
};

// Parses argv (getopt; may be called repeatedly). Errors name the offending flag.
rpc::Result<ServerOptions> parse_server_options(int argc, char* const argv[]);

// "4096", "64K", "4M", "1G", "1T" (binary multiples, case-insensitive, optional trailing B).
rpc::Result<std::uint64_t> parse_size(std::string_view text);

std::string server_usage(std::string_view prog);

}  // namespace tosec::host
