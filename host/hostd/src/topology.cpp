#include "tosec/hostd/topology.h"

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <set>

namespace tosec::hostd {

using rpc::Error;
using rpc::Result;
using rpc::Status;
namespace v1 = tosec::v1;

namespace {

std::string cidr_text(const v1::IpPrefix& p) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int af = p.address().size() == 4 ? AF_INET : AF_INET6;
  if (::inet_ntop(af, p.address().data(), buf, sizeof buf) == nullptr) return {};
  return std::string(buf) + "/" + std::to_string(p.prefix_len());
}

std::string ports_text(const v1::PortRange& r) {
  if (r.first() == 0 && r.last() == 0) return {};
  if (r.last() == 0 || r.last() == r.first()) return std::to_string(r.first());
  return std::to_string(r.first()) + "-" + std::to_string(r.last());
}

Result<cli::ChainConfig> chain_from_proto(const v1::Chain& c) {
  cli::ChainConfig out;
  out.name = c.name();
  if (out.name.empty()) return Error{EINVAL, "chain.name: empty"};
  if (c.steps().empty()) return Error{EINVAL, "chain \"" + out.name + "\": no steps"};
  for (int i = 0; i < c.steps_size(); ++i) {
    const auto& s = c.steps(i);
    std::vector<std::string> step;
    if (s.has_parallel()) {
      step.assign(s.parallel().svms().begin(), s.parallel().svms().end());
    } else if (!s.svm().empty()) {
      step.push_back(s.svm());
    }
    if (step.empty()) {
      return Error{EINVAL, "chain \"" + out.name + "\": step " + std::to_string(i) + " is empty"};
    }
    out.steps.push_back(std::move(step));
  }
  switch (c.fail_policy()) {
    case v1::FAIL_POLICY_FAIL_OPEN:
      out.fail = "open";
      break;
    case v1::FAIL_POLICY_UNSPECIFIED:
    case v1::FAIL_POLICY_FAIL_CLOSED:
      out.fail = "closed";
      break;
    default:
      return Error{EINVAL, "chain \"" + out.name + "\": fail_policy " +
                               std::to_string(c.fail_policy()) + " is not closed or open"};
  }
  if (c.deadline_us() != 0) {
    out.deadline_ms =
        static_cast<std::uint32_t>(std::max<std::uint64_t>(1, c.deadline_us() / 1000));
  }
  return out;
}

Result<cli::PolicyConfig> policy_from_proto(const v1::Policy& p) {
  cli::PolicyConfig out;
  out.name = p.name();
  const std::string where = "policy \"" + out.name + "\"";
  if (out.name.empty()) return Error{EINVAL, "policy.name: empty"};
  out.guest = p.guest();
  out.chain = p.chain();
  switch (p.direction()) {
    case v1::DIRECTION_UNSPECIFIED:
      out.direction = "both";
      break;
    case v1::DIRECTION_OUTGOING:
      out.direction = "out";
      break;
    case v1::DIRECTION_INCOMING:
      out.direction = "in";
      break;
    default:
      return Error{EINVAL, where + ": direction " + std::to_string(p.direction()) + " unknown"};
  }
  switch (p.protocol()) {
    case v1::PROTOCOL_ANY:
      out.protocol = "any";
      break;
    case v1::PROTOCOL_TCP:
      out.protocol = "tcp";
      break;
    case v1::PROTOCOL_UDP:
      out.protocol = "udp";
      break;
    default:
      return Error{EINVAL, where + ": protocol " + std::to_string(p.protocol()) + " unknown"};
  }
  for (auto [prefix, text, key] : {std::tuple{&p.local(), &out.local, "local"},
                                   std::tuple{&p.remote(), &out.remote, "remote"}}) {
    if (!prefix->address().empty()) {
      if (prefix->address().size() != 4 && prefix->address().size() != 16) {
        return Error{EINVAL, where + ": " + key + ".address must be 4 or 16 bytes"};
      }
      *text = cidr_text(*prefix);
    }
  }
  // The config's `port` is the remote port of outgoing and the local port of incoming streams.
  const auto& ports = p.direction() == v1::DIRECTION_INCOMING || p.remote_ports().first() == 0
                          ? p.local_ports()
                          : p.remote_ports();
  out.port = ports_text(ports);
  return out;
}

}  // namespace

v1::Topology config_to_topology(const cli::Config& cfg, std::uint64_t generation) {
  v1::Topology t;
  t.set_generation(generation);
  auto* tovm = t.add_tovms();
  tovm->set_name("tovm");
  tovm->set_id(1);
  tovm->set_stack(v1::STACK_BACKEND_KERNEL);
  tovm->set_workers(cfg.tovm.workers);
  std::uint32_t id = 0;
  for (const auto& g : cfg.guests) {
    auto* pg = t.add_guests();
    pg->set_name(g.name);
    pg->set_id(++id);
    pg->set_tovm("tovm");
  }
  id = 0;
  for (const auto& s : cfg.svms) {
    auto* ps = t.add_svms();
    ps->set_name(s.name);
    ps->set_id(++id);
    ps->set_engine(cli::engine_type(s.engine));
    ps->set_tovm("tovm");
    ps->set_read_only(true);
    ps->set_mode(s.mode == "detect" ? v1::INSPECTION_MODE_DETECT : v1::INSPECTION_MODE_PREVENT);
    ps->set_workers(s.workers);
    if (!s.rules.empty()) (*ps->mutable_config())["rules"] = s.rules;
    for (const auto& [k, v] : s.options) (*ps->mutable_config())[k] = v;
  }
  id = 0;
  for (const auto& c : cfg.chains) {
    auto* pc = t.add_chains();
    pc->set_name(c.name);
    pc->set_id(++id);
    pc->set_fail_policy(c.fail == "open" ? v1::FAIL_POLICY_FAIL_OPEN : v1::FAIL_POLICY_FAIL_CLOSED);
    pc->set_deadline_us(std::uint64_t{c.deadline_ms} * 1000);
    for (const auto& step : c.steps) {
      auto* s = pc->add_steps();
      if (step.size() == 1) {
        s->set_svm(step[0]);
      } else {
        for (const auto& m : step) s->mutable_parallel()->add_svms(m);
      }
    }
  }
  const auto n = static_cast<std::uint32_t>(cfg.policies.size());
  std::uint32_t index = 0;
  for (const auto& p : cfg.policies) {
    auto* pp = t.add_policies();
    pp->set_name(p.name);
    pp->set_priority(n - index++);  // earlier policies win
    pp->set_guest(p.guest);
    pp->set_chain(p.chain);
    pp->set_direction(p.direction == "out"  ? v1::DIRECTION_OUTGOING
                      : p.direction == "in" ? v1::DIRECTION_INCOMING
                                            : v1::DIRECTION_UNSPECIFIED);
    pp->set_protocol(p.protocol == "tcp"   ? v1::PROTOCOL_TCP
                     : p.protocol == "udp" ? v1::PROTOCOL_UDP
                                           : v1::PROTOCOL_ANY);
    if (!p.local.empty()) cli::set_prefix(p.local, pp->mutable_local());
    if (!p.remote.empty()) cli::set_prefix(p.remote, pp->mutable_remote());
    if (!p.port.empty()) {
      cli::set_ports(p.port,
                     p.direction == "in" ? pp->mutable_local_ports() : pp->mutable_remote_ports());
    }
  }
  return t;
}

Status validate_chains_and_policies(const cli::Config& cfg) {
  std::set<std::string> chains;
  for (const auto& c : cfg.chains) {
    if (!chains.insert(c.name).second) {
      return Error{EINVAL, "chain \"" + c.name + "\": defined twice"};
    }
    if (c.fail != "closed" && c.fail != "open") {
      return Error{EINVAL, "chain \"" + c.name + "\": fail must be closed or open"};
    }
    std::set<std::string> seen;
    for (const auto& step : c.steps) {
      for (const auto& m : step) {
        const bool known = std::any_of(cfg.svms.begin(), cfg.svms.end(),
                                       [&](const cli::SvmConfig& s) { return s.name == m; });
        if (!known) return Error{EINVAL, "chain \"" + c.name + "\": no svm \"" + m + "\""};
        if (!seen.insert(m).second) {
          return Error{EINVAL, "chain \"" + c.name + "\": svm \"" + m + "\" appears twice"};
        }
      }
    }
  }
  std::set<std::string> names;
  for (const auto& p : cfg.policies) {
    const std::string where = "policy \"" + p.name + "\"";
    if (!names.insert(p.name).second) return Error{EINVAL, where + ": name used twice"};
    if (cfg.find_guest(p.guest) == nullptr) {
      return Error{EINVAL, where + ": guest: no guest \"" + p.guest + "\""};
    }
    if (!chains.contains(p.chain)) {
      return Error{EINVAL, where + ": chain: no chain \"" + p.chain + "\""};
    }
    for (auto [key, text] : {std::pair{"local", &p.local}, std::pair{"remote", &p.remote}}) {
      if (text->empty()) continue;
      if (auto s = cli::check_cidr(*text); !s) {
        return Error{EINVAL, where + ": " + key + ": " + s.message()};
      }
    }
    if (!p.port.empty()) {
      if (auto s = cli::check_port_spec(p.port); !s) {
        return Error{EINVAL, where + ": port: " + s.message()};
      }
    }
  }
  return {};
}

Result<cli::Config> set_chain(const cli::Config& cfg, const v1::Chain& chain) {
  auto c = chain_from_proto(chain);
  if (!c) return c.error();
  cli::Config out = cfg;
  auto it = std::find_if(out.chains.begin(), out.chains.end(),
                         [&](const cli::ChainConfig& v) { return v.name == c->name; });
  if (it != out.chains.end()) {
    *it = std::move(*c);
  } else {
    out.chains.push_back(std::move(*c));
  }
  if (auto s = validate_chains_and_policies(out); !s) return s.error();
  return out;
}

Result<cli::Config> add_policy(const cli::Config& cfg, const v1::Policy& policy) {
  auto p = policy_from_proto(policy);
  if (!p) return p.error();
  cli::Config out = cfg;
  auto it = std::find_if(out.policies.begin(), out.policies.end(),
                         [&](const cli::PolicyConfig& v) { return v.name == p->name; });
  if (it != out.policies.end()) {
    *it = std::move(*p);  // same name: replaced in place (keeps its precedence)
  } else {
    out.policies.insert(out.policies.begin(), std::move(*p));  // new: ahead of the others
  }
  if (auto s = validate_chains_and_policies(out); !s) return s.error();
  return out;
}

Result<cli::Config> remove_policy(const cli::Config& cfg, const std::string& name) {
  cli::Config out = cfg;
  const auto n =
      std::erase_if(out.policies, [&](const cli::PolicyConfig& p) { return p.name == name; });
  if (n == 0) return Error{ENOENT, "policy \"" + name + "\": no such policy"};
  return out;
}

Result<cli::Config> apply_topology(const cli::Config& cfg, const v1::Topology& t) {
  auto same = [](const auto& proto_list, const auto& cfg_list, const char* what) -> Status {
    if (proto_list.empty()) return {};
    std::set<std::string> a;
    std::set<std::string> b;
    for (const auto& e : proto_list) a.insert(e.name());
    for (const auto& e : cfg_list) b.insert(e.name);
    if (a != b) {
      return Error{EBUSY, std::string(what) +
                              ": differ from the running platform's (they change only with "
                              "`tosec down` and `tosec up`)"};
    }
    return {};
  };
  if (auto s = same(t.guests(), cfg.guests, "guests"); !s) return s.error();
  if (auto s = same(t.svms(), cfg.svms, "svms"); !s) return s.error();
  if (t.tovms_size() > 1) return Error{EINVAL, "tovms: one TOVM per host in process mode"};
  cli::Config out = cfg;
  out.chains.clear();
  out.policies.clear();
  for (const auto& c : t.chains()) {
    auto cc = chain_from_proto(c);
    if (!cc) return cc.error();
    out.chains.push_back(std::move(*cc));
  }
  // Policies in order of priority, highest first (ties: as given).
  std::vector<const v1::Policy*> ps;
  for (const auto& p : t.policies()) ps.push_back(&p);
  std::stable_sort(ps.begin(), ps.end(),
                   [](const auto* a, const auto* b) { return a->priority() > b->priority(); });
  for (const auto* p : ps) {
    auto pc = policy_from_proto(*p);
    if (!pc) return pc.error();
    out.policies.push_back(std::move(*pc));
  }
  if (auto s = validate_chains_and_policies(out); !s) return s.error();
  return out;
}

Result<v1::Topology> guest_topology(const cli::Config& cfg, const std::string& guest,
                                    const cli::InspectionPlan& running, const std::string& data_dir,
                                    std::uint64_t generation) {
  auto plan = cli::plan_inspection(cfg, guest, data_dir);
  if (!plan) return Error{EINVAL, plan.error().message};
  if (!plan->empty() && running.empty()) {
    return Error{EBUSY, "guest \"" + guest +
                            "\" has no inspection region (no policy selected a chain for it at "
                            "`tosec up`): a chain for it needs `tosec down` and `tosec up`"};
  }
  std::map<std::string, std::uint32_t> nodes;
  for (const auto& s : running.svms) nodes[s.svm.name] = s.node;
  v1::Topology t = plan->topology;
  for (const auto& s : plan->svms) {
    if (!nodes.contains(s.svm.name)) {
      return Error{EBUSY, "svm \"" + s.svm.name + "\" does not run for guest \"" + guest +
                              "\" (SVMs start with `tosec up`, for the chains of the guest's "
                              "policies then); use a running one or `tosec down` and `tosec up`"};
    }
  }
  // The running SVMs keep their mesh nodes: the TOE's inspection region is laid out for them.
  t.clear_svms();
  if (!running.empty()) {
    for (const auto& s : running.topology.svms()) *t.add_svms() = s;
  }
  t.set_generation(generation);
  return t;
}

std::string render_topology(const v1::Topology& t, bool json) {
  if (json) {
    std::string out;
    google::protobuf::util::JsonPrintOptions o;
    o.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(t, &out, o);
    return out + "\n";
  }
  std::string out = "topology generation " + std::to_string(t.generation()) + "\n\nCHAINS\n";
  for (const auto& c : t.chains()) {
    std::string steps;
    for (const auto& s : c.steps()) {
      std::string step = s.svm();
      for (const auto& m : s.parallel().svms()) step += (step.empty() ? "" : "+") + m;
      steps += (steps.empty() ? "" : ",") + step;
    }
    out += "  " + c.name() + ": " + steps + " (fail " +
           (c.fail_policy() == v1::FAIL_POLICY_FAIL_OPEN ? "open" : "closed") + ")\n";
  }
  out += "\nPOLICIES (first match wins)\n";
  for (const auto& p : t.policies()) {
    auto pc = policy_from_proto(p);
    if (!pc) continue;
    out += "  " + pc->name + ": guest " + pc->guest + ", " + pc->direction + ", " + pc->protocol +
           (pc->remote.empty() ? "" : ", remote " + pc->remote) +
           (pc->local.empty() ? "" : ", local " + pc->local) +
           (pc->port.empty() ? "" : ", port " + pc->port) + " -> chain " + pc->chain + "\n";
  }
  return out;
}

Result<std::vector<std::vector<std::string>>> parse_chain_steps(const std::string& spec) {
  std::vector<std::vector<std::string>> steps;
  if (spec.empty()) return Error{EINVAL, "chain steps: empty"};
  std::size_t start = 0;
  while (start <= spec.size()) {
    auto comma = spec.find(',', start);
    if (comma == std::string::npos) comma = spec.size();
    const std::string step_text = spec.substr(start, comma - start);
    std::vector<std::string> step;
    std::size_t s = 0;
    while (s <= step_text.size()) {
      auto plus = step_text.find('+', s);
      if (plus == std::string::npos) plus = step_text.size();
      std::string name = step_text.substr(s, plus - s);
      if (name.empty()) {
        return Error{EINVAL, "chain steps \"" + spec +
                                 "\": empty step (use ids,waf+av: ',' separates steps, '+' a "
                                 "parallel group)"};
      }
      step.push_back(std::move(name));
      s = plus + 1;
    }
    steps.push_back(std::move(step));
    start = comma + 1;
  }
  return steps;
}

}  // namespace tosec::hostd
