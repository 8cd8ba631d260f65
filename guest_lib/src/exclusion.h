// TOSEC_EXCLUDE: which destinations stay on the kernel stack.
//
// Grammar: a comma-separated list of items, each either a CIDR ("10.0.0.0/8", "::1/128", a bare
// address meaning /32 or /128) or "port:N" (any address, that port). Whitespace around items is
// ignored. A socket whose bind or connect address matches any item is a kernel socket.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tosec/rpc/status.h"

namespace tosec::guest {

class ExclusionPolicy {
 public:
  static rpc::Result<ExclusionPolicy> parse(std::string_view spec);

  // True if `addr` (AF_INET or AF_INET6; v4-mapped v6 addresses also match v4 CIDRs) matches.
  bool excludes(const sockaddr* addr, socklen_t len) const;
  bool empty() const { return cidrs_.empty() && ports_.empty(); }

 private:
  struct Cidr {
    int family;                      // AF_INET / AF_INET6
    std::array<std::uint8_t, 16> a;  // network bytes
    unsigned prefix;
  };
  std::vector<Cidr> cidrs_;
  std::vector<std::uint16_t> ports_;
};

}  // namespace tosec::guest
