// parse_ids_rules / load_ids_rules: the rule header and every supported option. Anything else is
// rejected with file, line and sid, so no rule is loaded with a meaning it does not have.
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "net_spec.h"
#include "rule_lexer.h"
#include "tosec/svm/engines/ids_rule.h"

namespace tosec::svm::ids {
namespace {

template <class Int>
bool parse_int(std::string_view s, Int& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Builds "<file>:<line>: <what>[ in sid N]".
class RuleErrors {
 public:
  RuleErrors(const std::string& file, unsigned line) : file_(file), line_(line) {}
  void set_sid(std::uint32_t sid) { sid_ = sid; }
  rpc::Error operator()(const std::string& what) const {
    std::string m = file_ + ":" + std::to_string(line_) + ": " + what;
    if (sid_ != 0) m += " in sid " + std::to_string(sid_);
    return rpc::Error{EINVAL, std::move(m)};
  }

 private:
  const std::string& file_;
  unsigned line_;
  std::uint32_t sid_ = 0;
};

rpc::Status parse_header(const std::vector<std::string>& h, Rule& rule, const RuleErrors& err) {
  if (h.size() != 7) {
    return err(
        "rule header needs 7 fields '<action> <proto> <src> <sport> -> <dst> <dport>', got " +
        std::to_string(h.size()));
  }
  const std::string action = lowercase(h[0]);
  if (action == "alert") {
    rule.action = RuleAction::kAlert;
  } else if (action == "drop") {
    rule.action = RuleAction::kDrop;
  } else if (action == "reject") {
    rule.action = RuleAction::kReject;
  } else if (action == "pass") {
    rule.action = RuleAction::kPass;
  } else {
    return err("unknown action '" + h[0] + "' (alert, drop, reject, pass)");
  }
  const std::string proto = lowercase(h[1]);
  if (proto == "tcp") {
    rule.protocol = RuleProtocol::kTcp;
  } else if (proto == "udp") {
    rule.protocol = RuleProtocol::kUdp;
  } else if (proto == "ip") {
    rule.protocol = RuleProtocol::kIp;
  } else if (proto == "http") {
    rule.protocol = RuleProtocol::kHttp;
  } else {
    return err("unsupported protocol '" + h[1] + "' (tcp, udp, ip, http)");
  }
  if (h[4] == "->") {
    rule.bidirectional = false;
  } else if (h[4] == "<>") {
    rule.bidirectional = true;
  } else {
    return err("bad direction '" + h[4] + "' (-> or <>)");
  }
  auto src = parse_address_spec(h[2]);
  if (!src) return err("source address: " + src.error().message);
  auto sport = parse_port_spec(h[3]);
  if (!sport) return err("source port: " + sport.error().message);
  auto dst = parse_address_spec(h[5]);
  if (!dst) return err("destination address: " + dst.error().message);
  auto dport = parse_port_spec(h[6]);
  if (!dport) return err("destination port: " + dport.error().message);
  rule.src = std::move(*src);
  rule.src_ports = std::move(*sport);
  rule.dst = std::move(*dst);
  rule.dst_ports = std::move(*dport);
  return {};
}

rpc::Status parse_pcre(const RuleOption& o, Rule& rule, const RuleErrors& err) {
  auto q = unquote_option_value(o.value);
  if (!q) return err("pcre: " + q.error().message);
  const std::string& v = q->inner;
  const auto last = v.rfind('/');
  if (v.size() < 2 || v.front() != '/' || last == 0) {
    return err("pcre must look like \"/regex/flags\"");
  }
  RuleElement e;
  e.kind = RuleElement::Kind::kPcre;
  e.negated = q->negated;
  e.pattern = v.substr(1, last - 1);
  if (e.pattern.empty()) return err("empty pcre");
  for (char f : v.substr(last + 1)) {
    switch (f) {
      case 'i':
        e.caseless = true;
        break;
      case 's':
        e.dotall = true;
        break;
      case 'm':
        e.multiline = true;
        break;
      case 'x':
        e.extended = true;
        break;
      case 'R':
        e.relative = true;
        break;
      default:
        return err(std::string("unsupported pcre flag '") + f + "' (supported: i s m x R)");
    }
  }
  rule.elements.push_back(std::move(e));
  return {};
}

// A modifier (nocase, offset, ...) applies to the content just before it.
rpc::Status parse_content_modifier(const RuleOption& o, Rule& rule, const RuleErrors& err) {
  if (rule.elements.empty() || rule.elements.back().kind != RuleElement::Kind::kContent) {
    return err("'" + o.name + "' needs a preceding content");
  }
  RuleElement& c = rule.elements.back();
  if (o.name == "nocase") {
    if (o.has_value) return err("nocase takes no value");
    if (c.nocase) return err("duplicate nocase");
    c.nocase = true;
    return {};
  }
  if (o.name == "fast_pattern") {
    if (o.has_value && o.value != "only") {
      return err("unsupported fast_pattern argument '" + o.value + "' (none or 'only')");
    }
    if (c.negated) return err("fast_pattern on a negated content");
    if (std::any_of(rule.elements.begin(), rule.elements.end(),
                    [](const RuleElement& e) { return e.fast_pattern; })) {
      return err("more than one fast_pattern");
    }
    c.fast_pattern = true;
    return {};
  }
  if (!o.has_value) return err("'" + o.name + "' needs a value");
  if (o.name == "distance") {
    std::int32_t v = 0;
    if (!parse_int(o.value, v)) return err("bad distance '" + o.value + "'");
    if (c.distance) return err("duplicate distance");
    c.distance = v;
  } else {
    std::uint32_t v = 0;
    if (!parse_int(o.value, v)) return err("bad " + o.name + " '" + o.value + "'");
    std::optional<std::uint32_t>* slot = o.name == "offset"  ? &c.offset
                                         : o.name == "depth" ? &c.depth
                                                             : &c.within;
    if (slot->has_value()) return err("duplicate " + o.name);
    *slot = v;
    if ((o.name == "depth" || o.name == "within") && v < c.bytes.size()) {
      return err(o.name + " " + o.value + " is shorter than its content (" +
                 std::to_string(c.bytes.size()) + " bytes)");
    }
  }
  const bool absolute = c.offset || c.depth;
  const bool relative = c.distance || c.within;
  if (absolute && relative) {
    return err("content mixes offset/depth with distance/within");
  }
  return {};
}

rpc::Status parse_flow(const RuleOption& o, Rule& rule, const RuleErrors& err) {
  if (!o.has_value) return err("flow needs a value");
  std::stringstream ss(o.value);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    const auto e = item.find_last_not_of(" \t");
    item = b == std::string::npos ? "" : item.substr(b, e - b + 1);
    RuleFlow dir = RuleFlow::kAny;
    if (item == "to_server" || item == "from_client") {
      dir = RuleFlow::kToServer;
    } else if (item == "to_client" || item == "from_server") {
      dir = RuleFlow::kToClient;
    } else if (item == "established" || item == "stateless") {
      continue;  // every inspected stream is established; stateless changes nothing here
    } else {
      return err("unsupported flow option '" + item +
                 "' (to_server, to_client, from_client, from_server, established, stateless)");
    }
    if (rule.flow != RuleFlow::kAny && rule.flow != dir) return err("flow has both directions");
    rule.flow = dir;
  }
  return {};
}

rpc::Status parse_uint_option(const RuleOption& o, std::uint32_t& out, const RuleErrors& err) {
  if (!o.has_value || !parse_int(o.value, out)) {
    return err("bad " + o.name + " '" + o.value + "'");
  }
  return {};
}

rpc::Status parse_option(const RuleOption& o, Rule& rule, const RuleErrors& err) {
  const std::string& n = o.name;
  if (n == "content") {
    auto q = unquote_option_value(o.value);
    if (!q) return err("content: " + q.error().message);
    auto bytes = decode_ids_content(q->inner);
    if (!bytes) return err("content: " + bytes.error().message);
    RuleElement e;
    e.kind = RuleElement::Kind::kContent;
    e.negated = q->negated;
    e.bytes = std::move(*bytes);
    rule.elements.push_back(std::move(e));
    return {};
  }
  if (n == "pcre") return parse_pcre(o, rule, err);
  if (n == "nocase" || n == "offset" || n == "depth" || n == "distance" || n == "within" ||
      n == "fast_pattern") {
    return parse_content_modifier(o, rule, err);
  }
  if (n == "flow") return parse_flow(o, rule, err);
  if (n == "msg") {
    auto q = unquote_option_value(o.value);
    if (!q || q->negated) return err("msg must be a quoted string");
    rule.msg = q->inner;
    // Only the escapes matter for a message; drop the backslashes.
    std::string m;
    for (std::size_t i = 0; i < rule.msg.size(); ++i) {
      if (rule.msg[i] == '\\' && i + 1 < rule.msg.size()) ++i;
      m += rule.msg[i];
    }
    rule.msg = std::move(m);
    return {};
  }
  if (n == "sid") return {};  // read before the other options
  if (n == "rev") return parse_uint_option(o, rule.rev, err);
  if (n == "gid") return parse_uint_option(o, rule.gid, err);
  if (n == "priority") {
    if (auto st = parse_uint_option(o, rule.priority, err); !st) return st;
    if (rule.priority == 0 || rule.priority > 255) return err("priority must be 1..255");
    return {};
  }
  if (n == "classtype") {
    if (!o.has_value || o.value.empty()) return err("classtype needs a value");
    rule.classtype = o.value;
    return {};
  }
  if (n == "reference") {
    rule.references.push_back(o.value);
    return {};
  }
  if (n == "metadata") {
    rule.metadata.push_back(o.value);
    return {};
  }
  return err("unsupported rule option '" + n + "'");
}

// What the engine needs on top of syntax: a prefilter element and sane relative options.
rpc::Status check_elements(Rule& rule, const RuleErrors& err) {
  const auto& els = rule.elements;
  std::optional<std::size_t> fp;
  auto positive_content = [&](std::size_t i) {
    return els[i].kind == RuleElement::Kind::kContent && !els[i].negated;
  };
  // Explicit fast_pattern, else the longest positive content (the first of equals), else the
  // first positive pcre (compiled in Hyperscan prefilter mode).
  for (std::size_t i = 0; i < els.size() && !fp; ++i) {
    if (positive_content(i) && els[i].fast_pattern) fp = i;
  }
  for (std::size_t i = 0; i < els.size() && !els.empty(); ++i) {
    if (positive_content(i) &&
        (!fp || (!els[*fp].fast_pattern && els[i].bytes.size() > els[*fp].bytes.size()))) {
      fp = i;
    }
  }
  for (std::size_t i = 0; i < els.size() && !fp; ++i) {
    if (els[i].kind == RuleElement::Kind::kPcre && !els[i].negated) fp = i;
  }
  if (!fp.has_value()) {
    return err(
        "rule needs a content or a pcre that is not negated (header-only rules belong in the acl "
        "engine)");
  }
  rule.fast_pattern = *fp;
  return {};
}

rpc::Result<Rule> parse_one(const LogicalRule& lr, const std::string& file) {
  RuleErrors err(file, lr.line);
  auto lexed = lex_rule(lr.text);
  if (!lexed) return err(lexed.error().message);
  Rule rule;
  rule.file = file;
  rule.line = lr.line;
  // The sid first, so every later message can name it.
  for (const auto& o : lexed->options) {
    if (o.name != "sid") continue;
    if (rule.sid != 0) return err("duplicate sid option");
    if (!o.has_value || !parse_int(o.value, rule.sid) || rule.sid == 0) {
      return err("bad sid '" + o.value + "'");
    }
    err.set_sid(rule.sid);
  }
  if (rule.sid == 0) return err("rule has no sid");
  if (auto st = parse_header(lexed->header, rule, err); !st) return st.error();
  for (const auto& o : lexed->options) {
    if (auto st = parse_option(o, rule, err); !st) return st.error();
  }
  if (auto st = check_elements(rule, err); !st) return st.error();
  return rule;
}

rpc::Status check_unique_sids(const std::vector<Rule>& rules) {
  std::map<std::uint32_t, const Rule*> seen;
  for (const auto& r : rules) {
    auto [it, inserted] = seen.emplace(r.sid, &r);
    if (!inserted) {
      return rpc::Error{EINVAL, r.where() + "duplicate sid " + std::to_string(r.sid) +
                                    " (first defined at " + it->second->file + ":" +
                                    std::to_string(it->second->line) + ")"};
    }
  }
  return {};
}

rpc::Result<std::vector<Rule>> parse_file_text(std::string_view text, const std::string& file) {
  std::vector<Rule> rules;
  for (const auto& lr : split_logical_rules(text)) {
    auto r = parse_one(lr, file);
    if (!r) return r.error();
    rules.push_back(std::move(*r));
  }
  return rules;
}

rpc::Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return rpc::errno_error("open rules file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return rpc::errno_error("read rules file " + path);
  return ss.str();
}

}  // namespace

rpc::Result<std::vector<Rule>> parse_ids_rules(std::string_view text, const std::string& file) {
  auto rules = parse_file_text(text, file);
  if (!rules) return rules;
  if (auto st = check_unique_sids(*rules); !st) return st.error();
  return rules;
}

rpc::Result<std::vector<Rule>> load_ids_rules(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (entry.is_regular_file() && entry.path().extension() == ".rules") {
        files.push_back(entry.path().string());
      }
    }
    if (ec) return rpc::Error{ec.value(), "list rules directory " + path + ": " + ec.message()};
    std::sort(files.begin(), files.end());
    if (files.empty()) return rpc::Error{ENOENT, "no *.rules file in " + path};
  } else {
    files.push_back(path);
  }
  std::vector<Rule> all;
  for (const auto& f : files) {
    auto text = read_file(f);
    if (!text) return text.error();
    auto rules = parse_file_text(*text, f);
    if (!rules) return rules.error();
    for (auto& r : *rules) all.push_back(std::move(r));
  }
  if (auto st = check_unique_sids(all); !st) return st.error();
  return all;
}

}  // namespace tosec::svm::ids
