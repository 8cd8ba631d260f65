#include "tosec/cli/inspection.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

namespace tosec::cli {

using rpc::Error;
using rpc::Result;
using rpc::Status;

namespace {

constexpr std::string_view kEngines[] = {"ids", "waf", "av", "acl"};

bool is_engine(std::string_view s) {
  return std::find(std::begin(kEngines), std::end(kEngines), s) != std::end(kEngines);
}

tosec::v1::Protocol protocol(const std::string& p) {
  if (p == "tcp") return tosec::v1::PROTOCOL_TCP;
  if (p == "udp") return tosec::v1::PROTOCOL_UDP;
  return tosec::v1::PROTOCOL_ANY;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const auto pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos == std::string_view::npos ? s.npos : pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

}  // namespace

tosec::v1::EngineType engine_type(const std::string& e) {
  if (e == "ids") return tosec::v1::ENGINE_TYPE_IDS;
  if (e == "waf") return tosec::v1::ENGINE_TYPE_WAF;
  if (e == "av") return tosec::v1::ENGINE_TYPE_AV;
  if (e == "acl") return tosec::v1::ENGINE_TYPE_ACL;
  return tosec::v1::ENGINE_TYPE_UNSPECIFIED;
}

// "10.0.0.0/8", "::1" -> IpPrefix (the config parser already validated the text).
void set_prefix(const std::string& cidr, tosec::v1::IpPrefix* out) {
  std::string addr = cidr;
  int len = -1;
  if (auto slash = addr.find('/'); slash != std::string::npos) {
    len = std::stoi(addr.substr(slash + 1));
    addr.resize(slash);
  }
  unsigned char buf[16];
  if (::inet_pton(AF_INET, addr.c_str(), buf) == 1) {
    out->set_address(buf, 4);
    out->set_prefix_len(static_cast<std::uint32_t>(len < 0 ? 32 : len));
  } else if (::inet_pton(AF_INET6, addr.c_str(), buf) == 1) {
    out->set_address(buf, 16);
    out->set_prefix_len(static_cast<std::uint32_t>(len < 0 ? 128 : len));
  }
}

void set_ports(const std::string& spec, tosec::v1::PortRange* out) {
  const auto dash = spec.find('-');
  const auto first = static_cast<std::uint32_t>(std::stoul(spec.substr(0, dash)));
  const auto last = dash == std::string::npos
                        ? first
                        : static_cast<std::uint32_t>(std::stoul(spec.substr(dash + 1)));
  out->set_first(first);
  out->set_last(last);
}

std::string default_rules(const std::string& engine, const std::string& data_dir) {
  if (engine == "ids") return data_dir + "/rules/ids.rules";
  if (engine == "waf") return data_dir + "/rules/waf/waf.conf";
  if (engine == "av") return data_dir + "/rules/av";
  if (engine == "acl") return data_dir + "/rules/acl.rules";
  return {};
}

Result<std::string> resolve_data_dir(const char* env_data_dir, const std::string& self_dir,
                                     const ExistsFn& exists) {
  if (env_data_dir != nullptr && *env_data_dir != '\0') {
    if (!exists(std::string(env_data_dir) + "/rules/ids.rules")) {
      return Error{ENOENT, std::string("TOSEC_DATA_DIR=") + env_data_dir + " has no rules/"};
    }
    return std::string(env_data_dir);
  }
  const std::string build_tree = self_dir + "/../../../examples";
  if (exists(build_tree + "/rules/ids.rules")) return build_tree;
#ifdef TOSEC_SOURCE_EXAMPLES
  // A build directory outside the source tree: the examples of the tree it was built from.
  if (exists(std::string(TOSEC_SOURCE_EXAMPLES) + "/rules/ids.rules"))
    return std::string(TOSEC_SOURCE_EXAMPLES);
#endif
  const std::string installed = "/usr/local/share/tosec";
  if (exists(installed + "/rules/ids.rules")) return installed;
  return Error{ENOENT, "shipped rules not found in " + build_tree + " nor " + installed +
                           " (set TOSEC_DATA_DIR)"};
}

Status apply_chain_option(Config& cfg, const std::string& guest, std::string_view spec,
                          const std::string& fail) {
  if (spec.empty()) return Error{EINVAL, "--chain: empty chain"};
  if (fail != "closed" && fail != "open") {
    return Error{EINVAL, "--fail: must be \"closed\" or \"open\", got \"" + fail + "\""};
  }
  if (cfg.find_guest(guest) == nullptr) {
    return Error{EINVAL, "--chain: no guest \"" + guest + "\" in the config"};
  }
  ChainConfig chain;
  chain.name = kChainFlagName;
  chain.fail = fail;
  std::vector<std::string> seen;
  for (const auto& step_text : split(spec, ',')) {
    std::vector<std::string> step;
    for (const auto& name : split(step_text, '+')) {
      if (name.empty()) {
        return Error{EINVAL, "--chain: empty step in \"" + std::string(spec) +
                                 "\" (use ids,waf+av: ',' separates steps, '+' a parallel group)"};
      }
      if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
        return Error{EINVAL, "--chain: \"" + name + "\" appears twice"};
      }
      seen.push_back(name);
      const bool known = std::any_of(cfg.svms.begin(), cfg.svms.end(),
                                     [&](const SvmConfig& s) { return s.name == name; });
      if (!known) {
        if (!is_engine(name)) {
          return Error{EINVAL, "--chain: \"" + name +
                                   "\" is neither an [[svm]] of the config nor an engine (ids, "
                                   "waf, av, acl)"};
        }
        SvmConfig svm;
        svm.name = name;
        svm.engine = name;
        cfg.svms.push_back(std::move(svm));
      }
      step.push_back(name);
    }
    chain.steps.push_back(std::move(step));
  }
  std::erase_if(cfg.chains, [](const ChainConfig& c) { return c.name == kChainFlagName; });
  cfg.chains.push_back(std::move(chain));
  PolicyConfig policy;
  policy.guest = guest;
  policy.chain = kChainFlagName;
  policy.protocol = "any";
  cfg.policies.insert(cfg.policies.begin(), std::move(policy));  // first policy wins
  return {};
}

Result<InspectionPlan> plan_inspection(const Config& cfg, const std::string& guest,
                                       const std::string& data_dir) {
  InspectionPlan plan;
  auto& topo = plan.topology;
  topo.set_generation(1);
  auto* g = topo.add_guests();
  g->set_name(guest);
  g->set_id(1);

  std::map<std::string, std::uint32_t> chain_ids;
  std::map<std::string, std::uint32_t> nodes;
  const auto n_policies = static_cast<std::uint32_t>(cfg.policies.size());
  std::uint32_t index = 0;
  for (const auto& p : cfg.policies) {
    ++index;
    if (p.guest != guest) continue;
    const auto chain_it = std::find_if(cfg.chains.begin(), cfg.chains.end(),
                                       [&](const ChainConfig& c) { return c.name == p.chain; });
    if (chain_it == cfg.chains.end()) {
      return Error{EINVAL, "policy of guest \"" + guest + "\": no chain \"" + p.chain + "\""};
    }
    if (!chain_ids.contains(p.chain)) {
      const auto id = static_cast<std::uint32_t>(chain_ids.size() + 1);
      chain_ids[p.chain] = id;
      auto* c = topo.add_chains();
      c->set_name(chain_it->name);
      c->set_id(id);
      c->set_fail_policy(chain_it->fail == "open" ? tosec::v1::FAIL_POLICY_FAIL_OPEN
                                                  : tosec::v1::FAIL_POLICY_FAIL_CLOSED);
      c->set_deadline_us(std::uint64_t{chain_it->deadline_ms} * 1000);
      for (const auto& step : chain_it->steps) {
        auto* s = c->add_steps();
        if (step.size() == 1) {
          s->set_svm(step[0]);
        } else {
          for (const auto& m : step) s->mutable_parallel()->add_svms(m);
        }
        for (const auto& m : step) {
          if (nodes.contains(m)) continue;
          const auto svm_it = std::find_if(cfg.svms.begin(), cfg.svms.end(),
                                           [&](const SvmConfig& v) { return v.name == m; });
          if (svm_it == cfg.svms.end()) {
            return Error{EINVAL, "chain \"" + p.chain + "\": no svm \"" + m + "\""};
          }
          const auto node = static_cast<std::uint32_t>(nodes.size() + 1);
          nodes[m] = node;
          SvmInstance inst{*svm_it, node};
          if (inst.svm.rules.empty()) inst.svm.rules = default_rules(inst.svm.engine, data_dir);
          auto* v = topo.add_svms();
          v->set_name(inst.svm.name);
          v->set_id(node);
          v->set_engine(engine_type(inst.svm.engine));
          v->set_read_only(true);
          v->set_mode(inst.svm.mode == "detect" ? tosec::v1::INSPECTION_MODE_DETECT
                                                : tosec::v1::INSPECTION_MODE_PREVENT);
          v->set_workers(inst.svm.workers);
          (*v->mutable_config())["rules"] = inst.svm.rules;
          for (const auto& [k, val] : inst.svm.options) (*v->mutable_config())[k] = val;
          plan.svms.push_back(std::move(inst));
        }
      }
    }
    // One topology policy per direction, so `port` can mean the local port of incoming
    // connections and the remote port of outgoing ones (docs/config.md).
    for (const std::string_view dir : {std::string_view("out"), std::string_view("in")}) {
      if (p.direction != "both" && p.direction != dir) continue;
      auto* tp = topo.add_policies();
      tp->set_name(p.chain + "#" + std::to_string(index) + "." + std::string(dir));
      tp->set_priority(n_policies - index + 1);  // earlier policies win
      tp->set_guest(guest);
      tp->set_chain(p.chain);
      tp->set_protocol(protocol(p.protocol));
      tp->set_direction(dir == "out" ? tosec::v1::DIRECTION_OUTGOING
                                     : tosec::v1::DIRECTION_INCOMING);
      if (!p.local.empty()) set_prefix(p.local, tp->mutable_local());
      if (!p.remote.empty()) set_prefix(p.remote, tp->mutable_remote());
      if (!p.port.empty()) {
        set_ports(p.port, dir == "in" ? tp->mutable_local_ports() : tp->mutable_remote_ports());
      }
    }
  }
  return plan;
}

std::vector<std::string> svm_argv(const std::string& svm_binary, const SvmInstance& svm,
                                  const InspectionPaths& paths) {
  std::vector<std::string> argv = {svm_binary,
                                   "--engine",
                                   svm.svm.engine,
                                   "--rules",
                                   svm.svm.rules,
                                   "--name",
                                   svm.svm.name,
                                   "--node",
                                   std::to_string(svm.node),
                                   "--ivshmem",
                                   paths.ivshmem_socket,
                                   "--workers",
                                   std::to_string(svm.svm.workers),
                                   "--mode",
                                   svm.svm.mode,
                                   "--alert-log",
                                   paths.alert_log};
  for (const auto& [k, v] : svm.svm.options) {
    argv.push_back("--option");
    argv.push_back(k + "=" + v);
  }
  return argv;
}

Status write_topology(const tosec::v1::Topology& topology, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out || !topology.SerializeToOstream(&out)) {
      return rpc::errno_error("cannot write topology " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return rpc::errno_error("rename(" + tmp + ", " + path + ")");
  }
  return {};
}

}  // namespace tosec::cli
