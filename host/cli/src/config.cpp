#include "tosec/cli/config.h"

#include <arpa/inet.h>
#include <toml++/toml.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include "tosec/rpc/cpu_list.h"

namespace tosec::cli {

using rpc::Error;
using rpc::Result;
using rpc::Status;

const GuestConfig* Config::find_guest(std::string_view name) const {
  for (const auto& g : guests) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

bool VmConfig::has_role(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

Config default_config() {
  Config c;
  c.source = "<built-in defaults>";
  GuestConfig g;
  g.name = kDefaultGuestName;
  c.guests.push_back(g);
  return c;
}

Status check_guest_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxGuestNameLength) {
    return Error{EINVAL, "must be 1-" + std::to_string(kMaxGuestNameLength) +
                             " characters, got \"" + std::string(name) + "\""};
  }
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) {
    return Error{EINVAL, "must start with a letter or digit, got \"" + std::string(name) + "\""};
  }
  for (char c : name) {
    if (!alnum(c) && c != '_' && c != '-' && c != '.') {
      return Error{EINVAL, "may only hold letters, digits, '_', '-' and '.', got \"" +
                               std::string(name) + "\""};
    }
  }
  return {};
}

namespace {

bool parse_uint(std::string_view s, std::uint64_t max, std::uint64_t* out) {
  if (s.empty()) return false;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v > max) return false;
  *out = v;
  return true;
}

}  // namespace

// An address with an optional /prefix: "10.0.0.0/8", "::1/128", "192.0.2.1".
Status check_cidr(std::string_view text) {
  std::string addr(text);
  std::string prefix;
  if (auto slash = addr.find('/'); slash != std::string::npos) {
    prefix = addr.substr(slash + 1);
    addr.resize(slash);
  }
  unsigned char buf[16];
  std::uint64_t max_prefix = 0;
  if (::inet_pton(AF_INET, addr.c_str(), buf) == 1) {
    max_prefix = 32;
  } else if (::inet_pton(AF_INET6, addr.c_str(), buf) == 1) {
    max_prefix = 128;
  } else {
    return Error{EINVAL, "\"" + std::string(text) +
                             "\" is not an IPv4/IPv6 address or CIDR (like 10.0.0.0/8, ::1/128)"};
  }
  std::uint64_t p = 0;
  if (text.find('/') != std::string_view::npos && !parse_uint(prefix, max_prefix, &p)) {
    return Error{EINVAL, "\"" + std::string(text) + "\": prefix length must be in [0, " +
                             std::to_string(max_prefix) + "]"};
  }
  return {};
}

// "80" or "8000-8080".
Status check_port_spec(std::string_view text) {
  auto bad = [&] {
    return Error{EINVAL, "\"" + std::string(text) +
                             "\" is not a port or port range in [1, 65535] (like 80, 8000-8080)"};
  };
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
  if (auto dash = text.find('-'); dash != std::string_view::npos) {
    if (!parse_uint(text.substr(0, dash), 65535, &lo) ||
        !parse_uint(text.substr(dash + 1), 65535, &hi) || lo == 0 || hi < lo) {
      return bad();
    }
    return {};
  }
  if (!parse_uint(text, 65535, &lo) || lo == 0) return bad();
  return {};
}

Status check_listen_address(std::string_view text) {
  const auto colon = text.rfind(':');
  std::uint64_t port = 0;
  unsigned char buf[4];
  if (colon == std::string_view::npos ||
      ::inet_pton(AF_INET, std::string(text.substr(0, colon)).c_str(), buf) != 1 ||
      !parse_uint(text.substr(colon + 1), 65535, &port)) {
    return Error{EINVAL, "\"" + std::string(text) +
                             "\" is not an IPv4 address and port (like 127.0.0.1:9464; port 0 "
                             "picks a free one)"};
  }
  return {};
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Status check_exclude_entry(std::string_view entry) {
  if (entry.starts_with("port:")) {
    std::uint64_t p = 0;
    if (!parse_uint(entry.substr(5), 65535, &p) || p == 0) {
      return Error{EINVAL, "\"" + std::string(entry) + "\": port must be in [1, 65535]"};
    }
    return {};
  }
  if (entry.empty()) return Error{EINVAL, "empty entry (want a CIDR or \"port:N\")"};
  return check_cidr(entry);
}

Result<std::vector<std::string>> parse_exclude_list(std::string_view list) {
  std::vector<std::string> out;
  while (true) {
    const auto comma = list.find(',');
    const std::string_view item = trim(list.substr(0, comma));
    if (!item.empty()) {
      if (auto s = check_exclude_entry(item); !s) return s.error();
      out.emplace_back(item);
    }
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

namespace {

// Thrown inside the parser only, turned into an Error by parse_config().
struct ConfigError {
  std::string message;
};

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1);
  std::vector<std::size_t> cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const toml::source_region& where, const std::string& path,
                         const std::string& msg) const {
    std::string m = source_;
    if (where.begin.line != 0) {
      m += ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column);
    }
    m += ": ";
    if (!path.empty()) m += path + ": ";
    m += msg;
    throw ConfigError{std::move(m)};
  }

  void check_keys(const toml::table& t, const std::string& path,
                  std::initializer_list<std::string_view> known) const {
    for (const auto& [k, v] : t) {
      const std::string_view key = k.str();
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      std::string msg = "unknown key";
      std::string_view best;
      std::size_t best_d = 3;  // suggest only close matches
      for (auto cand : known) {
        const std::size_t d = edit_distance(key, cand);
        if (d < best_d) {
          best_d = d;
          best = cand;
        }
      }
      if (!best.empty()) {
        msg += " (did you mean '" + std::string(best) + "'?)";
      } else {
        msg += " (known keys:";
        for (auto cand : known) msg += " " + std::string(cand);
        msg += ")";
      }
      const auto& where = k.source().begin.line != 0 ? k.source() : v.source();
      fail(where, join(path, key), msg);
    }
  }

  static std::string join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  }

  // Unsigned integer in [lo, hi]; absent keeps `*out`.
  template <class T>
  void get_uint(const toml::table& t, std::string_view key, const std::string& path,
                std::uint64_t lo, std::uint64_t hi, T* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return;
    const std::string p = join(path, key);
    const auto* v = n->as_integer();
    if (v == nullptr)
      fail(n->source(), p, std::string("expected an integer, got ") + type_name(n->type()));
    const std::int64_t x = v->get();
    if (x < 0 || static_cast<std::uint64_t>(x) < lo || static_cast<std::uint64_t>(x) > hi) {
      fail(n->source(), p,
           "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
               std::to_string(x));
    }
    *out = static_cast<T>(x);
  }

  // Power of two in [lo, hi].
  void get_pow2(const toml::table& t, std::string_view key, const std::string& path,
                std::uint32_t lo, std::uint32_t hi, std::uint32_t* out) const {
    std::uint32_t v = *out;
    get_uint(t, key, path, 0, UINT32_MAX, &v);
    if (!std::has_single_bit(v) || v < lo || v > hi) {
      fail(t.get(key)->source(), join(path, key),
           "must be a power of two in [" + std::to_string(lo) + ", " + std::to_string(hi) +
               "], got " + std::to_string(v));
    }
    *out = v;
  }

  const toml::node* get_string(const toml::table& t, std::string_view key, const std::string& path,
                               std::string* out) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return nullptr;
    const auto* v = n->as_string();
    if (v == nullptr) {
      fail(n->source(), join(path, key),
           std::string("expected a string, got ") + type_name(n->type()));
    }
    *out = v->get();
    return n;
  }

  void get_enum(const toml::table& t, std::string_view key, const std::string& path,
                std::initializer_list<std::string_view> allowed, std::string* out) const {
    const toml::node* n = get_string(t, key, path, out);
    if (n == nullptr) return;
    if (std::find(allowed.begin(), allowed.end(), *out) != allowed.end()) return;
    std::string list;
    for (auto a : allowed) list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
    fail(n->source(), join(path, key), "must be one of " + list + ", got \"" + *out + "\"");
  }

  const toml::node& require(const toml::table& t, std::string_view key,
                            const std::string& path) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) fail(t.source(), path, "missing required key '" + std::string(key) + "'");
    return *n;
  }

  // A top-level [name] table (absent: nullptr).
  const toml::table* section(const toml::table& root, std::string_view key) const {
    const toml::node* n = root.get(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) {
      fail(n->source(), std::string(key),
           std::string("expected a table ([") + std::string(key) + "]), got " +
               type_name(n->type()));
    }
    return n->as_table();
  }

  // A top-level [[name]] array of tables.
  std::vector<const toml::table*> tables(const toml::table& root, std::string_view key) const {
    std::vector<const toml::table*> out;
    const toml::node* n = root.get(key);
    if (n == nullptr) return out;
    const auto* arr = n->as_array();
    if (arr == nullptr || !arr->is_array_of_tables()) {
      fail(n->source(), std::string(key),
           std::string("expected an array of tables ([[") + std::string(key) + "]]), got " +
               type_name(n->type()));
    }
    for (const auto& e : *arr) out.push_back(e.as_table());
    return out;
  }

  Config parse(const toml::table& root) const {
    Config c;
    c.source = source_;
    check_keys(root, "", {"platform", "host", "tovm", "guest", "svm", "chain", "policy", "vm"});
    if (const auto* t = section(root, "host")) {
      check_keys(*t, "host", {"metrics_listen"});
      if (const auto* n = get_string(*t, "metrics_listen", "host", &c.host.metrics_listen)) {
        if (auto s = check_listen_address(c.host.metrics_listen); !s) {
          fail(n->source(), "host.metrics_listen", s.message());
        }
      }
    }

    if (const auto* t = section(root, "platform")) {
      check_keys(*t, "platform", {"runtime_dir"});
      if (const auto* n = get_string(*t, "runtime_dir", "platform", &c.platform.runtime_dir)) {
        const std::string& d = c.platform.runtime_dir;
        if (d.empty() || d[0] != '/') {
          fail(n->source(), "platform.runtime_dir", "must be an absolute path, got \"" + d + "\"");
        }
        if (d.size() > kMaxRuntimeDirLength) {
          fail(n->source(), "platform.runtime_dir",
               "must be at most " + std::to_string(kMaxRuntimeDirLength) +
                   " characters (Unix socket paths live under it), got " +
                   std::to_string(d.size()));
        }
        while (c.platform.runtime_dir.size() > 1 && c.platform.runtime_dir.back() == '/') {
          c.platform.runtime_dir.pop_back();
        }
      }
    }

    if (const auto* t = section(root, "tovm")) {
      check_keys(*t, "tovm", {"mode", "workers", "cpus", "spin_ns", "log_level"});
      get_enum(*t, "mode", "tovm", {"shared", "per-guest"}, &c.tovm.mode);
      get_uint(*t, "workers", "tovm", 1, 64, &c.tovm.workers);
      if (const auto* n = get_string(*t, "cpus", "tovm", &c.tovm.cpus)) {
        // Only the syntax here: whether the CPUs exist is the kernel's answer, on the machine
        // that runs the TOE (tosec-tovm --cpus refuses them by number).
        // "" spells out the default: not pinned.
        if (!c.tovm.cpus.empty()) {
          if (auto cpus = rpc::parse_cpu_list(c.tovm.cpus); !cpus) {
            fail(n->source(), "tovm.cpus", cpus.error().message);
          }
        }
      }
      get_uint(*t, "spin_ns", "tovm", 0, 1'000'000'000, &c.tovm.spin_ns);
      get_enum(*t, "log_level", "tovm", {"error", "info", "debug"}, &c.tovm.log_level);
    }

    if (const auto* t = section(root, "vm")) parse_vm(*t, &c.vm);

    const auto guests = tables(root, "guest");
    for (std::size_t i = 0; i < guests.size(); ++i) {
      c.guests.push_back(parse_guest(*guests[i], "guest[" + std::to_string(i) + "]", c));
    }
    if (guests.empty()) c.guests = default_config().guests;
    for (std::size_t i = 0; i < c.guests.size(); ++i) {
      GuestConfig& g = c.guests[i];
      g.in_vm = c.vm.present && c.vm.has_role("guest");
      if (g.in_vm && g.channel.lanes < 2) {
        const toml::source_region where = i < guests.size() ? guests[i]->source() : root.source();
        fail(where, "guest[" + std::to_string(i) + "].lanes",
             "must be at least 2 when guests run in VMs ([vm] roles has \"guest\"): the last "
             "lane is the in-guest agent's, got " +
                 std::to_string(g.channel.lanes));
      }
    }

    const auto svms = tables(root, "svm");
    for (std::size_t i = 0; i < svms.size(); ++i) {
      c.svms.push_back(parse_svm(*svms[i], "svm[" + std::to_string(i) + "]", c));
    }
    const auto chains = tables(root, "chain");
    for (std::size_t i = 0; i < chains.size(); ++i) {
      c.chains.push_back(parse_chain(*chains[i], "chain[" + std::to_string(i) + "]", c));
    }
    const auto policies = tables(root, "policy");
    for (std::size_t i = 0; i < policies.size(); ++i) {
      c.policies.push_back(parse_policy(*policies[i], "policy[" + std::to_string(i) + "]", c));
      // Live changes (tosec policy rm NAME) address a policy by name: "policy-N" if unnamed.
      if (c.policies.back().name.empty())
        c.policies.back().name = "policy-" + std::to_string(i + 1);
    }
    return c;
  }

  void parse_vm(const toml::table& t, VmConfig* vm) const {
    vm->present = true;
    check_keys(t, "vm",
               {"images_dir", "roles", "name_prefix", "guest_memory_mib", "tovm_memory_mib",
                "svm_memory_mib", "guest_vcpus"});
    if (const auto* n = get_string(t, "images_dir", "vm", &vm->images_dir)) {
      if (vm->images_dir.empty()) fail(n->source(), "vm.images_dir", "must not be empty");
      vm->images_dir = resolve_config_path(source_, vm->images_dir);
    }
    if (const toml::node* n = t.get("roles")) {
      const auto* arr = n->as_array();
      if (arr == nullptr || arr->empty()) {
        fail(n->source(), "vm.roles", "expected a non-empty array of \"tovm\", \"svm\", \"guest\"");
      }
      vm->roles.clear();
      for (std::size_t i = 0; i < arr->size(); ++i) {
        const toml::node& e = *arr->get(i);
        const std::string p = "vm.roles[" + std::to_string(i) + "]";
        const auto* s = e.as_string();
        if (s == nullptr || (s->get() != "tovm" && s->get() != "svm" && s->get() != "guest")) {
          fail(e.source(), p, "must be one of \"tovm\", \"svm\", \"guest\"");
        }
        vm->roles.push_back(s->get());
      }
    }
    if (const auto* n = get_string(t, "name_prefix", "vm", &vm->name_prefix)) {
      const std::string& x = vm->name_prefix;
      if (x.size() > 16 || (!x.empty() && !check_guest_name(x))) {
        fail(n->source(), "vm.name_prefix",
             "must be at most 16 of [A-Za-z0-9_.-], starting with a letter or digit, got \"" + x +
                 "\"");
      }
    }
    get_uint(t, "guest_memory_mib", "vm", 64, 1U << 20, &vm->guest_memory_mib);
    get_uint(t, "tovm_memory_mib", "vm", 64, 1U << 20, &vm->tovm_memory_mib);
    get_uint(t, "svm_memory_mib", "vm", 64, 1U << 20, &vm->svm_memory_mib);
    get_uint(t, "guest_vcpus", "vm", 1, 64, &vm->guest_vcpus);
  }

  std::string get_name(const toml::table& t, const std::string& path) const {
    const toml::node& n = require(t, "name", path);
    std::string name;
    get_string(t, "name", path, &name);
    if (auto s = check_guest_name(name); !s) fail(n.source(), path + ".name", s.message());
    return name;
  }

  GuestConfig parse_guest(const toml::table& t, const std::string& path, const Config& c) const {
    check_keys(t, path,
               {"name", "lanes", "max_sockets", "ring_slots", "socket_rx_entries", "chunk_size",
                "tx_chunks_per_lane", "rx_chunks", "exclude", "spin_ns"});
    GuestConfig g;
    g.name = get_name(t, path);
    if (c.find_guest(g.name) != nullptr) {
      fail(t.get("name")->source(), path + ".name", "duplicate guest name \"" + g.name + "\"");
    }
    auto& ch = g.channel;
    get_uint(t, "lanes", path, 1, 256, &ch.lanes);
    get_uint(t, "max_sockets", path, 1, 1'000'000, &ch.max_sockets);
    get_pow2(t, "ring_slots", path, 8, 65536, &ch.ring_slots);
    get_pow2(t, "socket_rx_entries", path, 4, 4096, &ch.socket_rx_entries);
    get_uint(t, "chunk_size", path, 64, 1U << 24, &ch.chunk_size);
    if (ch.chunk_size % 64 != 0) {
      fail(t.get("chunk_size")->source(), path + ".chunk_size",
           "must be a multiple of 64, got " + std::to_string(ch.chunk_size));
    }
    const std::uint64_t max_tx = (1U << 24) / ch.lanes;
    get_uint(t, "tx_chunks_per_lane", path, 1, max_tx, &ch.tx_chunks_per_lane);
    if (std::uint64_t{ch.tx_chunks_per_lane} > max_tx) {  // default with many lanes
      fail(t.source(), path + ".tx_chunks_per_lane",
           "lanes x tx_chunks_per_lane must be at most 2^24, got " +
               std::to_string(std::uint64_t{ch.tx_chunks_per_lane} * ch.lanes));
    }
    get_uint(t, "rx_chunks", path, 1, 1U << 24, &ch.rx_chunks);
    get_uint(t, "spin_ns", path, 0, 1'000'000'000, &g.spin_ns);
    const std::uint64_t size = rpc::guest_region_layout(ch).pow2_size();
    if (size > kMaxRegionSize) {
      fail(t.source(), path,
           "the guest region would be " + std::to_string(size >> 20) + " MiB, more than the " +
               std::to_string(kMaxRegionSize >> 30) +
               " GiB limit; lower rx_chunks, tx_chunks_per_lane, lanes, chunk_size or "
               "max_sockets");
    }
    if (const toml::node* n = t.get("exclude")) {
      const auto* arr = n->as_array();
      if (arr == nullptr) {
        fail(n->source(), path + ".exclude",
             std::string("expected an array of strings, got ") + type_name(n->type()));
      }
      for (std::size_t i = 0; i < arr->size(); ++i) {
        const toml::node& e = *arr->get(i);
        const std::string p = path + ".exclude[" + std::to_string(i) + "]";
        const auto* s = e.as_string();
        if (s == nullptr)
          fail(e.source(), p, std::string("expected a string, got ") + type_name(e.type()));
        if (auto st = check_exclude_entry(s->get()); !st) fail(e.source(), p, st.message());
        g.exclude.push_back(s->get());
      }
    }
    return g;
  }

  SvmConfig parse_svm(const toml::table& t, const std::string& path, const Config& c) const {
    check_keys(t, path, {"name", "engine", "rules", "mode", "workers", "options"});
    SvmConfig s;
    s.name = get_name(t, path);
    for (const auto& o : c.svms) {
      if (o.name == s.name) {
        fail(t.get("name")->source(), path + ".name", "duplicate svm name \"" + s.name + "\"");
      }
    }
    require(t, "engine", path);
    get_enum(t, "engine", path, {"ids", "waf", "av", "acl"}, &s.engine);
    if (get_string(t, "rules", path, &s.rules) != nullptr && s.rules.empty()) {
      fail(t.get("rules")->source(), path + ".rules", "must not be empty (omit it for defaults)");
    }
    if (!s.rules.empty()) s.rules = resolve_config_path(source_, s.rules);
    get_enum(t, "mode", path, {"prevent", "detect"}, &s.mode);
    get_uint(t, "workers", path, 0, 64, &s.workers);
    if (const toml::node* n = t.get("options")) {
      const auto* opts = n->as_table();
      if (opts == nullptr) {
        fail(n->source(), path + ".options",
             std::string("expected a table of strings, got ") + type_name(n->type()));
      }
      for (const auto& [k, v] : *opts) {
        const std::string op = path + ".options." + std::string(k.str());
        if (const auto* str = v.as_string()) {
          s.options[std::string(k.str())] = str->get();
        } else if (const auto* i = v.as_integer()) {
          s.options[std::string(k.str())] = std::to_string(i->get());
        } else if (const auto* b = v.as_boolean()) {
          s.options[std::string(k.str())] = b->get() ? "true" : "false";
        } else {
          fail(v.source(), op,
               std::string("expected a string, integer or boolean, got ") + type_name(v.type()));
        }
      }
    }
    return s;
  }

  ChainConfig parse_chain(const toml::table& t, const std::string& path, const Config& c) const {
    check_keys(t, path, {"name", "steps", "fail", "deadline_ms"});
    ChainConfig ch;
    ch.name = get_name(t, path);
    for (const auto& o : c.chains) {
      if (o.name == ch.name) {
        fail(t.get("name")->source(), path + ".name", "duplicate chain name \"" + ch.name + "\"");
      }
    }
    get_enum(t, "fail", path, {"closed", "open"}, &ch.fail);
    get_uint(t, "deadline_ms", path, 1, 3'600'000, &ch.deadline_ms);
    const toml::node& sn = require(t, "steps", path);
    const auto* steps = sn.as_array();
    if (steps == nullptr || steps->empty()) {
      fail(sn.source(), path + ".steps",
           "expected a non-empty array of steps (like [[\"ids\"], [\"waf\", \"av\"]])");
    }
    std::set<std::string> seen;
    for (std::size_t i = 0; i < steps->size(); ++i) {
      const toml::node& step = *steps->get(i);
      const std::string sp = path + ".steps[" + std::to_string(i) + "]";
      std::vector<std::pair<const toml::node*, std::string>> names;
      if (step.is_string()) {  // a bare "ids" is a one-SVM step
        names.emplace_back(&step, sp);
      } else if (const auto* group = step.as_array(); group != nullptr && !group->empty()) {
        for (std::size_t j = 0; j < group->size(); ++j) {
          names.emplace_back(group->get(j), sp + "[" + std::to_string(j) + "]");
        }
      } else {
        fail(step.source(), sp, "expected an SVM name or a non-empty array of SVM names");
      }
      std::vector<std::string> out;
      for (const auto& [node, np] : names) {
        const auto* s = node->as_string();
        if (s == nullptr)
          fail(node->source(), np,
               std::string("expected an SVM name, got ") + type_name(node->type()));
        const std::string& name = s->get();
        const bool known = std::any_of(c.svms.begin(), c.svms.end(),
                                       [&](const SvmConfig& v) { return v.name == name; });
        if (!known) fail(node->source(), np, "no [[svm]] named \"" + name + "\"");
        if (!seen.insert(name).second) {
          fail(node->source(), np, "svm \"" + name + "\" appears twice in the chain");
        }
        out.push_back(name);
      }
      ch.steps.push_back(std::move(out));
    }
    return ch;
  }

  PolicyConfig parse_policy(const toml::table& t, const std::string& path, const Config& c) const {
    check_keys(t, path,
               {"name", "guest", "direction", "chain", "protocol", "remote", "local", "port"});
    PolicyConfig p;
    get_string(t, "name", path, &p.name);
    const toml::node& gn = require(t, "guest", path);
    get_string(t, "guest", path, &p.guest);
    if (c.find_guest(p.guest) == nullptr) {
      fail(gn.source(), path + ".guest", "no [[guest]] named \"" + p.guest + "\"");
    }
    const toml::node& cn = require(t, "chain", path);
    get_string(t, "chain", path, &p.chain);
    const bool chain_known = std::any_of(c.chains.begin(), c.chains.end(),
                                         [&](const ChainConfig& v) { return v.name == p.chain; });
    if (!chain_known) fail(cn.source(), path + ".chain", "no [[chain]] named \"" + p.chain + "\"");
    get_enum(t, "direction", path, {"out", "in", "both"}, &p.direction);
    get_enum(t, "protocol", path, {"tcp", "udp", "any"}, &p.protocol);
    for (auto [key, out] : {std::pair{"remote", &p.remote}, std::pair{"local", &p.local}}) {
      if (const toml::node* n = get_string(t, key, path, out)) {
        if (auto s = check_cidr(*out); !s) fail(n->source(), join(path, key), s.message());
      }
    }
    if (const toml::node* n = t.get("port")) {
      if (const auto* i = n->as_integer()) {
        p.port = std::to_string(i->get());
      } else {
        get_string(t, "port", path, &p.port);
      }
      if (auto s = check_port_spec(p.port); !s) fail(n->source(), path + ".port", s.message());
    }
    return p;
  }

 private:
  std::string source_;
};

}  // namespace

std::string resolve_config_path(const std::string& source, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  if (source.empty() || source[0] == '<') return path;  // "<built-in defaults>", "<--chain>"
  // Absolute: the supervisor of `tosec up` runs in "/", and SVMs may start in other dirs.
  std::error_code ec;
  const auto full =
      std::filesystem::absolute(std::filesystem::path(source).parent_path() / path, ec);
  return ec ? path : full.lexically_normal().string();
}

Result<Config> parse_config(std::string_view text, const std::string& source) {
  try {
    toml::table root = toml::parse(text, source);
    return Parser(source).parse(root);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return Error{EINVAL, source + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                             ": " + std::string(e.description())};
  } catch (const ConfigError& e) {
    return Error{EINVAL, e.message};
  }
}

Result<Config> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return rpc::errno_error("cannot read config " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return rpc::errno_error("cannot read config " + path);
  return parse_config(ss.str(), path);
}

}  // namespace tosec::cli
