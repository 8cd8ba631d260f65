#include "net_spec.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <charconv>
#include <cstring>
#include <string>

namespace tosec::svm::ids {
namespace {

rpc::Error net_error(std::string message) { return rpc::Error{EINVAL, std::move(message)}; }

// Splits "a,[b,c],d" at top-level commas.
rpc::Result<std::vector<std::string_view>> split_list(std::string_view body) {
  std::vector<std::string_view> parts;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= body.size(); ++i) {
    if (i < body.size() && body[i] == '[') ++depth;
    if (i < body.size() && body[i] == ']') --depth;
    if (i == body.size() || (body[i] == ',' && depth == 0)) {
      std::string_view part = body.substr(start, i - start);
      if (part.empty()) return net_error("empty element in list '[" + std::string(body) + "]'");
      parts.push_back(part);
      start = i + 1;
    }
  }
  return parts;
}

bool prefix_matches(const std::uint8_t* a, const std::uint8_t* b, unsigned prefix) {
  const unsigned full = prefix / 8;
  if (std::memcmp(a, b, full) != 0) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFFu << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

template <class Spec>
bool list_matches(const std::vector<Spec>& items, auto&& matches_item) {
  bool any_positive = false;
  bool positive_hit = false;
  for (const auto& item : items) {
    if (item.negated) {
      if (matches_item(item)) return false;
    } else {
      any_positive = true;
      if (!positive_hit && matches_item(item)) positive_hit = true;
    }
  }
  return !any_positive || positive_hit;
}

rpc::Result<std::uint16_t> parse_port(std::string_view s, std::string_view whole) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v > 65535) {
    return net_error("bad port '" + std::string(s) + "' in '" + std::string(whole) + "'");
  }
  return static_cast<std::uint16_t>(v);
}

}  // namespace

bool AddressSpec::matches(const Endpoint& e) const {
  bool inner = true;
  switch (kind) {
    case Kind::kAny:
      inner = true;
      break;
    case Kind::kCidr:
      inner = e.family == family && prefix_matches(e.addr, addr, prefix);
      break;
    case Kind::kList:
      // Items carry their own negation; evaluate them without this node's flag.
      inner = list_matches(items, [&](const AddressSpec& it) {
        return it.negated ? !it.matches(e) : it.matches(e);
      });
      break;
  }
  return negated ? !inner : inner;
}

bool PortSpec::matches(std::uint16_t port) const {
  bool inner = true;
  switch (kind) {
    case Kind::kAny:
      inner = true;
      break;
    case Kind::kRange:
      inner = port >= lo && port <= hi;
      break;
    case Kind::kList:
      inner = list_matches(items, [&](const PortSpec& it) {
        return it.negated ? !it.matches(port) : it.matches(port);
      });
      break;
  }
  return negated ? !inner : inner;
}

namespace {

// The grammar addresses and ports share: [!] ( any | [item, item, ...] | leaf ), items parsed
// recursively; $VARIABLES are rejected. `what` ("address", "port") and `forms` name them in
// messages; `leaf` parses one address/CIDR or port/range into the spec (s without the '!').
template <class Spec, class Leaf>
rpc::Result<Spec> parse_spec(std::string_view text, std::string_view what, std::string_view forms,
                             Leaf leaf) {
  Spec spec;
  std::string_view s = text;
  if (!s.empty() && s.front() == '!') {
    spec.negated = true;
    s.remove_prefix(1);
  }
  if (s.empty()) return net_error("empty " + std::string(what));
  if (s.front() == '$') {
    return net_error(std::string(what) + " variables like '" + std::string(s) +
                     "' are not supported; write " + std::string(forms) + ", [lists] or 'any'");
  }
  if (s == "any") {
    if (spec.negated) return net_error("'!any' matches nothing");
    return spec;
  }
  if (s.front() == '[') {
    if (s.back() != ']') return net_error("unterminated list '" + std::string(s) + "'");
    auto parts = split_list(s.substr(1, s.size() - 2));
    if (!parts) return parts.error();
    spec.kind = Spec::Kind::kList;
    for (auto part : *parts) {
      auto item = parse_spec<Spec>(part, what, forms, leaf);
      if (!item) return item.error();
      spec.items.push_back(std::move(*item));
    }
    return spec;
  }
  if (auto st = leaf(s, spec); !st) return st.error();
  return spec;
}

rpc::Status parse_cidr(std::string_view s, AddressSpec& spec) {
  spec.kind = AddressSpec::Kind::kCidr;
  std::string addr(s);
  unsigned prefix = 0;
  bool has_prefix = false;
  if (const auto slash = addr.find('/'); slash != std::string::npos) {
    const std::string p = addr.substr(slash + 1);
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (ec != std::errc{} || ptr != p.data() + p.size()) {
      return net_error("bad CIDR prefix in '" + std::string(s) + "'");
    }
    has_prefix = true;
    addr.resize(slash);
  }
  if (inet_pton(AF_INET, addr.c_str(), spec.addr) == 1) {
    spec.family = AF_INET;
    if (!has_prefix) prefix = 32;
    if (prefix > 32) return net_error("bad CIDR prefix in '" + std::string(s) + "'");
  } else if (inet_pton(AF_INET6, addr.c_str(), spec.addr) == 1) {
    spec.family = AF_INET6;
    if (!has_prefix) prefix = 128;
    if (prefix > 128) return net_error("bad CIDR prefix in '" + std::string(s) + "'");
  } else {
    return net_error("bad address '" + std::string(s) + "'");
  }
  spec.prefix = prefix;
  return {};
}

rpc::Status parse_port_range(std::string_view s, PortSpec& spec) {
  spec.kind = PortSpec::Kind::kRange;
  if (const auto colon = s.find(':'); colon != std::string_view::npos) {
    const auto lo = s.substr(0, colon);
    const auto hi = s.substr(colon + 1);
    if (lo.empty() && hi.empty()) return net_error("bad port range ':'");
    if (!lo.empty()) {
      auto v = parse_port(lo, s);
      if (!v) return v.error();
      spec.lo = *v;
    }
    if (!hi.empty()) {
      auto v = parse_port(hi, s);
      if (!v) return v.error();
      spec.hi = *v;
    }
    if (spec.lo > spec.hi) return net_error("empty port range '" + std::string(s) + "'");
    return {};
  }
  auto v = parse_port(s, s);
  if (!v) return v.error();
  spec.lo = spec.hi = *v;
  return {};
}

}  // namespace

rpc::Result<AddressSpec> parse_address_spec(std::string_view text) {
  return parse_spec<AddressSpec>(text, "address", "addresses, CIDRs", parse_cidr);
}

rpc::Result<PortSpec> parse_port_spec(std::string_view text) {
  return parse_spec<PortSpec>(text, "port", "ports, ranges", parse_port_range);
}

}  // namespace tosec::svm::ids
