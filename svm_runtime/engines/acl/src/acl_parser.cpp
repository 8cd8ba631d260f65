// The ACL grammar (docs/engines/acl.md):
//   line     := [ 'default' ('allow'|'deny') | rule ] [ '#' comment ]
//   rule     := action proto { selector } [ 'msg' "text" ]
//   action   := 'allow' | 'deny' | 'alert'
//   proto    := 'tcp' | 'udp' | 'any'
//   selector := ('local'|'remote') addr [ 'port' ports ] | ('lport'|'rport') ports
//             | 'guest' name | 'direction' ('out'|'in')
//   addr     := 'any' | IPv4[/len] | IPv6[/len]         ports := N | N:M
// Each selector may appear once per rule.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <charconv>

#include "acl_rules.h"

namespace tosec::svm::acl {
namespace {

struct Token {
  std::string text;
  bool quoted = false;
};

class LineError {
 public:
  LineError(const std::string& source, unsigned line)
      : where_(source + ":" + std::to_string(line)) {}
  rpc::Error operator()(const std::string& what) const {
    return rpc::Error{EINVAL, where_ + ": " + what};
  }

 private:
  std::string where_;
};

// Splits a line into words and "quoted strings" (with \" and \\ escapes); '#' outside quotes
// ends the line.
rpc::Result<std::vector<Token>> tokenize(std::string_view line, const LineError& err) {
  std::vector<Token> out;
  std::size_t i = 0;
  while (i < line.size()) {
    const char c = line[i];
    if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
    } else if (c == '#') {
      break;
    } else if (c == '"') {
      Token t{{}, true};
      ++i;
      bool closed = false;
      while (i < line.size()) {
        char d = line[i++];
        if (d == '"') {
          closed = true;
          break;
        }
        if (d == '\\' && i < line.size()) d = line[i++];
        t.text.push_back(d);
      }
      if (!closed) return err("unterminated quoted string");
      out.push_back(std::move(t));
    } else {
      const std::size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r' &&
             line[i] != '#' && line[i] != '"') {
        ++i;
      }
      out.push_back(Token{std::string(line.substr(start, i - start)), false});
    }
  }
  return out;
}

std::optional<unsigned> parse_uint(std::string_view s, unsigned max) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty() || v > max) return std::nullopt;
  return v;
}

rpc::Result<PortRange> parse_ports(const std::string& s, const LineError& err) {
  const auto colon = s.find(':');
  const auto lo = parse_uint(std::string_view(s).substr(0, colon), 65535);
  const auto hi =
      colon == std::string::npos ? lo : parse_uint(std::string_view(s).substr(colon + 1), 65535);
  if (!lo || !hi) return err("bad port '" + s + "': expected N or N:M with 0 <= N <= 65535");
  if (*lo > *hi) return err("bad port range '" + s + "': start is after end");
  return PortRange{static_cast<std::uint16_t>(*lo), static_cast<std::uint16_t>(*hi)};
}

rpc::Result<std::optional<Cidr>> parse_address(const std::string& s, const LineError& err) {
  if (s == "any") return std::optional<Cidr>{};
  const auto slash = s.find('/');
  const std::string host = s.substr(0, slash);
  Cidr c;
  if (inet_pton(AF_INET, host.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET;
  } else if (inet_pton(AF_INET6, host.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET6;
  } else {
    return err("bad address '" + s + "': expected any, an IPv4 or IPv6 address, or a CIDR");
  }
  const unsigned max_bits = c.family == AF_INET ? 32 : 128;
  c.prefix = max_bits;
  if (slash != std::string::npos) {
    const auto bits = parse_uint(std::string_view(s).substr(slash + 1), max_bits);
    if (!bits) {
      return err("bad prefix length in '" + s + "': expected 0.." + std::to_string(max_bits));
    }
    c.prefix = *bits;
  }
  // Host bits set under the mask are almost always a typo (10.1.2.3/16 meant 10.1.0.0/16?).
  for (unsigned bit = c.prefix; bit < max_bits; ++bit) {
    if (c.addr[bit / 8] & (0x80u >> (bit % 8))) {
      return err("address '" + s + "' has host bits set beyond /" + std::to_string(c.prefix));
    }
  }
  return std::optional<Cidr>{c};
}

rpc::Result<Rule> parse_rule(const std::vector<Token>& t, RuleAction action, const LineError& err,
                             std::string_view text) {
  Rule r;
  r.action = action;
  if (t.size() < 2)
    return err("missing protocol after '" + t[0].text + "': expected tcp, udp or any");
  if (t[1].text == "tcp") {
    r.protocol = IPPROTO_TCP;
  } else if (t[1].text == "udp") {
    r.protocol = IPPROTO_UDP;
  } else if (t[1].text != "any") {
    return err("bad protocol '" + t[1].text + "': expected tcp, udp or any");
  }
  bool have_msg = false;
  // The side ('local' or 'remote') of the address just read, for a following 'port'.
  std::optional<PortRange>* pending_port = nullptr;
  for (std::size_t i = 2; i < t.size(); ++i) {
    const std::string& key = t[i].text;
    if (t[i].quoted) return err("unexpected quoted string \"" + key + "\": only msg takes one");
    auto value = [&]() -> const Token* { return i + 1 < t.size() ? &t[++i] : nullptr; };
    auto need = [&](const Token* v, const char* what) -> rpc::Status {
      if (v == nullptr) return err("'" + key + "' needs " + what);
      return {};
    };
    auto once = [&](bool already) -> rpc::Status {
      if (already) return err("'" + key + "' given twice");
      return {};
    };
    std::optional<PortRange>* port_slot = nullptr;
    if (key == "local" || key == "remote") {
      auto& slot = key == "local" ? r.local : r.remote;
      auto& ports = key == "local" ? r.lport : r.rport;
      const Token* v = value();
      if (auto s = need(v, "an address or CIDR"); !s) return s.error();
      if (slot.has_value()) return err("'" + key + "' given twice");
      auto addr = parse_address(v->text, err);
      if (!addr) return addr.error();
      slot = *addr;
      pending_port = &ports;
      continue;
    } else if (key == "port") {
      if (pending_port == nullptr) {
        return err("'port' must follow a local or remote address; use lport or rport");
      }
      port_slot = pending_port;
    } else if (key == "lport") {
      port_slot = &r.lport;
    } else if (key == "rport") {
      port_slot = &r.rport;
    } else if (key == "guest") {
      const Token* v = value();
      if (auto s = need(v, "a guest name"); !s) return s.error();
      if (auto s = once(r.guest.has_value()); !s) return s.error();
      r.guest = v->text;
    } else if (key == "direction") {
      const Token* v = value();
      if (auto s = need(v, "out or in"); !s) return s.error();
      if (auto s = once(r.direction != ConnDirection::kAny); !s) return s.error();
      if (v->text == "out") {
        r.direction = ConnDirection::kOut;
      } else if (v->text == "in") {
        r.direction = ConnDirection::kIn;
      } else {
        return err("bad direction '" + v->text + "': expected out (guest connected) or in");
      }
    } else if (key == "msg") {
      const Token* v = value();
      if (v == nullptr || !v->quoted) return err("'msg' needs a \"quoted string\"");
      if (auto s = once(have_msg); !s) return s.error();
      have_msg = true;
      r.msg = v->text;
    } else {
      return err("unknown keyword '" + key +
                 "': expected local, remote, port, lport, rport, guest, direction or msg");
    }
    if (port_slot != nullptr) {
      const Token* v = value();
      if (auto s = need(v, "a port or N:M range"); !s) return s.error();
      if (auto s = once(port_slot->has_value()); !s) return s.error();
      auto ports = parse_ports(v->text, err);
      if (!ports) return ports.error();
      *port_slot = *ports;
    }
    pending_port = nullptr;
  }
  if (!have_msg) r.msg = std::string(text);
  return r;
}

std::string_view trim_comment(std::string_view line) {
  // Only for the default message: the rule text without its trailing comment. A '#' inside a
  // msg string never reaches here (rules with msg use the msg).
  if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
    line.remove_suffix(1);
  }
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
  return line;
}

}  // namespace

rpc::Result<RuleSet> parse_rules(std::string_view text, const std::string& source) {
  RuleSet set;
  unsigned line_no = 0;
  unsigned default_line = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    const LineError err(source, line_no);
    auto tokens = tokenize(line, err);
    if (!tokens) return tokens.error();
    const auto& t = *tokens;
    if (t.empty()) continue;
    const std::string& head = t[0].text;
    if (t[0].quoted) return err("a line must start with allow, deny, alert or default");
    if (head == "default") {
      if (t.size() != 2 || (t[1].text != "allow" && t[1].text != "deny")) {
        return err("expected 'default allow' or 'default deny'");
      }
      if (default_line != 0) {
        return err("second 'default' line (first at line " + std::to_string(default_line) + ")");
      }
      default_line = line_no;
      set.default_action = t[1].text == "allow" ? RuleAction::kAllow : RuleAction::kDeny;
      continue;
    }
    RuleAction action;
    if (head == "allow") {
      action = RuleAction::kAllow;
    } else if (head == "deny") {
      action = RuleAction::kDeny;
    } else if (head == "alert") {
      action = RuleAction::kAlert;
    } else {
      return err("unknown action '" + head + "': expected allow, deny, alert or default");
    }
    auto rule = parse_rule(t, action, err, trim_comment(line));
    if (!rule) return rule.error();
    rule->line = line_no;
    set.rules.push_back(std::move(*rule));
  }
  return set;
}

}  // namespace tosec::svm::acl
