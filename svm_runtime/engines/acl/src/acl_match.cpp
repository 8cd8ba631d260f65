#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "acl_rules.h"

namespace tosec::svm::acl {
namespace {

bool prefix_equal(const std::uint8_t* a, const std::uint8_t* b, unsigned bits) {
  const unsigned whole = bits / 8;
  if (std::memcmp(a, b, whole) != 0) return false;
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xffu << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

bool is_v4_mapped(const std::uint8_t* a) {
  static constexpr std::uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, kPrefix, sizeof kPrefix) == 0;
}

}  // namespace

bool Cidr::contains(const Endpoint& e) const {
  if (e.family == family) return prefix_equal(addr.data(), e.addr, prefix);
  // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; an IPv4 rule still applies.
  if (family == AF_INET && e.family == AF_INET6 && is_v4_mapped(e.addr)) {
    return prefix_equal(addr.data(), e.addr + 12, prefix);
  }
  return false;
}

bool Rule::matches(const StreamInfo& s) const {
  if (protocol != 0 && protocol != s.protocol) return false;
  if (direction == ConnDirection::kOut && !s.guest_is_client) return false;
  if (direction == ConnDirection::kIn && s.guest_is_client) return false;
  if (guest && *guest != s.guest) return false;
  if (local && !local->contains(s.local)) return false;
  if (remote && !remote->contains(s.remote)) return false;
  if (lport && !lport->contains(s.local.port)) return false;
  if (rport && !rport->contains(s.remote.port)) return false;
  return true;
}

const Rule* first_match(const RuleSet& set, const StreamInfo& s) {
  for (const Rule& r : set.rules) {
    if (r.matches(s)) return &r;
  }
  return nullptr;
}

}  // namespace tosec::svm::acl
