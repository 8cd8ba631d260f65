#include "tosec/agent/agent_options.h"

#include <cstdlib>

namespace tosec::agent {

namespace {

rpc::Result<unsigned long> number(const std::string& flag, const std::string& v, unsigned long lo,
                                  unsigned long hi) {
  char* end = nullptr;
  const unsigned long n = std::strtoul(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < lo || n > hi) {
    return rpc::Error{EINVAL, flag + " '" + v + "': expected a number in [" + std::to_string(lo) +
                                  ", " + std::to_string(hi) + "]"};
  }
  return n;
}

}  // namespace

rpc::Result<AgentOptions> parse_agent_options(int argc, char** argv) {
  AgentOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") return rpc::Error{ECANCELED, "help"};
    if (a == "-v" || a == "--verbose") {
      o.verbose = true;
      continue;
    }
    if (i + 1 >= argc) return rpc::Error{EINVAL, "unknown or incomplete argument '" + a + "'"};
    const std::string v = argv[++i];
    if (a == "--device") {
      auto d = parse_device_spec(v);
      if (!d) return d.error();
      o.device = *d;
    } else if (a == "--ivshmem-socket") {
      o.ivshmem_socket = v;
    } else if (a == "--toe-socket") {
      o.toe_socket = v;
    } else if (a == "--vectors") {
      // Vector 0 is the agent's, so a useful agent has at least one more for a process.
      auto n = number(a, v, 2, 256);
      if (!n) return n.error();
      o.vectors = static_cast<unsigned>(*n);
    } else if (a == "--irq") {
      o.irq = v;
    } else if (a == "--toe-peer") {
      auto n = number(a, v, 0, 0xffff);
      if (!n) return n.error();
      o.toe_peer = static_cast<rpc::PeerId>(*n);
    } else {
      return rpc::Error{EINVAL, "unknown argument '" + a + "'"};
    }
  }
  return o;
}

}  // namespace tosec::agent
