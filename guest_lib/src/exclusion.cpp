#include "exclusion.h"

#include <arpa/inet.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace tosec::guest {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool prefix_match(const std::uint8_t* a, const std::uint8_t* net, unsigned prefix) {
  const unsigned full = prefix / 8;
  if (std::memcmp(a, net, full) != 0) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFFU << (8 - rest));
  return (a[full] & mask) == (net[full] & mask);
}

}  // namespace

rpc::Result<ExclusionPolicy> ExclusionPolicy::parse(std::string_view spec) {
  ExclusionPolicy p;
  while (!spec.empty()) {
    const std::size_t comma = spec.find(',');
    std::string_view item = trim(spec.substr(0, comma));
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    if (item.empty()) continue;
    const std::string s(item);
    if (item.substr(0, 5) == "port:") {
      char* end = nullptr;
      const long port = std::strtol(s.c_str() + 5, &end, 10);
      if (end == s.c_str() + 5 || *end != '\0' || port < 1 || port > 65535) {
        return rpc::Error{EINVAL, "TOSEC_EXCLUDE: bad port in '" + s + "'"};
      }
      p.ports_.push_back(static_cast<std::uint16_t>(port));
      continue;
    }
    const std::size_t slash = s.find('/');
    const std::string addr = s.substr(0, slash);
    Cidr c{};
    if (inet_pton(AF_INET, addr.c_str(), c.a.data()) == 1) {
      c.family = AF_INET;
      c.prefix = 32;
    } else if (inet_pton(AF_INET6, addr.c_str(), c.a.data()) == 1) {
      c.family = AF_INET6;
      c.prefix = 128;
    } else {
      return rpc::Error{EINVAL, "TOSEC_EXCLUDE: bad address in '" + s + "'"};
    }
    if (slash != std::string::npos) {
      const std::string pre = s.substr(slash + 1);
      char* end = nullptr;
      const long n = std::strtol(pre.c_str(), &end, 10);
      if (pre.empty() || *end != '\0' || n < 0 || n > static_cast<long>(c.prefix)) {
        return rpc::Error{EINVAL, "TOSEC_EXCLUDE: bad prefix length in '" + s + "'"};
      }
      c.prefix = static_cast<unsigned>(n);
    }
    p.cidrs_.push_back(c);
  }
  return p;
}

bool ExclusionPolicy::excludes(const sockaddr* addr, socklen_t len) const {
  if (addr == nullptr) return false;
  std::uint16_t port = 0;
  std::uint8_t v4[4];
  std::uint8_t v6[16];
  bool has4 = false;
  bool has6 = false;
  if (addr->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    sockaddr_in in{};
    std::memcpy(&in, addr, sizeof in);
    port = ntohs(in.sin_port);
    std::memcpy(v4, &in.sin_addr, 4);
    has4 = true;
  } else if (addr->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, addr, sizeof in6);
    port = ntohs(in6.sin6_port);
    std::memcpy(v6, &in6.sin6_addr, 16);
    has6 = true;
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (std::memcmp(v6, kMapped, 12) == 0) {
      std::memcpy(v4, v6 + 12, 4);
      has4 = true;
    }
  } else {
    return false;
  }
  for (const std::uint16_t p : ports_) {
    if (p == port) return true;
  }
  for (const Cidr& c : cidrs_) {
    if (c.family == AF_INET && has4 && prefix_match(v4, c.a.data(), c.prefix)) return true;
    if (c.family == AF_INET6 && has6 && prefix_match(v6, c.a.data(), c.prefix)) return true;
  }
  return false;
}

}  // namespace tosec::guest
