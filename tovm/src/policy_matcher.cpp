#include "tosec/tovm/policy_matcher.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace tosec::tovm {

rpc::Result<PolicyMatcher> PolicyMatcher::create(const tosec::v1::Topology& topology,
                                                 const std::string& guest) {
  PolicyMatcher m;
  for (int i = 0; i < topology.policies_size(); ++i) {
    const auto& p = topology.policies(i);
    if (!p.guest().empty() && p.guest() != guest) continue;
    if (p.chain().empty()) continue;  // "no inspection"
    const std::string what = "topology policy " + std::to_string(i) + " (" + p.name() + ")";
    const auto chain =
        std::find_if(topology.chains().begin(), topology.chains().end(),
                     [&](const tosec::v1::Chain& c) { return c.name() == p.chain(); });
    if (chain == topology.chains().end()) {
      return rpc::Error{EINVAL, what + ": no chain \"" + p.chain() + "\""};
    }
    Rule r;
    r.priority = p.priority();
    r.direction = p.direction() == tosec::v1::DIRECTION_OUTGOING   ? 1
                  : p.direction() == tosec::v1::DIRECTION_INCOMING ? 2
                                                                   : 0;
    r.protocol = static_cast<int>(p.protocol());
    for (auto [src, dst, name] : {std::tuple{&p.local(), &r.local, "local"},
                                  std::tuple{&p.remote(), &r.remote, "remote"}}) {
      const std::string& a = src->address();
      if (a.empty()) continue;
      const std::uint32_t max = a.size() == 4 ? 32 : 128;
      if ((a.size() != 4 && a.size() != 16) || src->prefix_len() > max) {
        return rpc::Error{EINVAL, what + ": bad " + std::string(name) + " prefix (" +
                                      std::to_string(a.size()) + "-byte address, length " +
                                      std::to_string(src->prefix_len()) + ")"};
      }
      dst->family = a.size() == 4 ? AF_INET : AF_INET6;
      std::memcpy(dst->addr, a.data(), a.size());
      dst->len = src->prefix_len();
    }
    if (p.has_local_ports()) {
      r.lport_lo = p.local_ports().first();
      r.lport_hi = p.local_ports().last();
    }
    if (p.has_remote_ports()) {
      r.rport_lo = p.remote_ports().first();
      r.rport_hi = p.remote_ports().last();
    }
    if (r.lport_lo > r.lport_hi || r.rport_lo > r.rport_hi || r.lport_hi > 0xFFFF ||
        r.rport_hi > 0xFFFF) {
      return rpc::Error{EINVAL, what + ": bad port range"};
    }
    if ((r.lport_lo == 0 && r.lport_hi == 0)) r.lport_hi = 0xFFFF;  // {0,0} = any
    if ((r.rport_lo == 0 && r.rport_hi == 0)) r.rport_hi = 0xFFFF;
    r.chain = ChainChoice{chain->id(), chain->name()};
    m.rules_.push_back(std::move(r));
  }
  std::stable_sort(m.rules_.begin(), m.rules_.end(),
                   [](const Rule& a, const Rule& b) { return a.priority > b.priority; });
  return m;
}

bool PolicyMatcher::prefix_matches(const Prefix& p, const svm::Endpoint& e) {
  if (p.family == 0) return true;
  if (p.family != e.family) return false;
  const std::uint32_t full = p.len / 8;
  if (std::memcmp(p.addr, e.addr, full) != 0) return false;
  const std::uint32_t rest = p.len % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (p.addr[full] & mask) == (e.addr[full] & mask);
}

std::optional<ChainChoice> PolicyMatcher::match(const svm::StreamInfo& s) const {
  const int dir = s.guest_is_client ? 1 : 2;
  for (const Rule& r : rules_) {
    if (r.direction != 0 && r.direction != dir) continue;
    if (r.protocol != 0 && r.protocol != s.protocol) continue;
    if (s.local.port < r.lport_lo || s.local.port > r.lport_hi) continue;
    if (s.remote.port < r.rport_lo || s.remote.port > r.rport_hi) continue;
    if (!prefix_matches(r.local, s.local) || !prefix_matches(r.remote, s.remote)) continue;
    return r.chain;
  }
  return std::nullopt;
}

}  // namespace tosec::tovm
