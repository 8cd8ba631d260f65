#include "compiled_rules.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace tosec::svm::ids {
namespace {

// Every content byte as \xNN: NULs, metacharacters and non-ASCII need no special cases.
std::string render_literal(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size() * 4);
  char buf[5];
  for (char ch : bytes) {
    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(ch));
    out += buf;
  }
  return out;
}

bool later_depends(const std::vector<RuleElement>& els, std::size_t k) {
  for (std::size_t j = k + 1; j < els.size(); ++j) {
    if (els[j].is_relative()) return true;
    if (!els[j].negated) break;  // later elements measure from this one instead
  }
  return false;
}

// See CompiledRule::bounded. Conservative: anything not clearly bounded is unbounded.
void compute_reach(CompiledRule& cr) {
  const auto& els = cr.rule.elements;
  const std::size_t fp = cr.rule.fast_pattern;
  cr.bounded = true;
  cr.reach = 0;
  if (els.front().negated) cr.bounded = false;
  for (std::size_t k = 1; k < els.size() && cr.bounded; ++k) {
    const auto& e = els[k];
    const bool is_content = e.kind == RuleElement::Kind::kContent;
    if (!e.is_relative()) cr.bounded = false;  // may appear anywhere, later too
    if (k <= fp && is_content && e.distance.value_or(0) < 0) cr.bounded = false;
    if (k > fp || e.negated) {
      if (!is_content || !e.within) {
        cr.bounded = false;
      } else {
        cr.reach += static_cast<std::uint64_t>(std::max(0, e.distance.value_or(0))) + *e.within;
      }
    }
  }
}

struct PatternSet {
  std::vector<std::string> exprs;
  std::vector<unsigned> flags;
  std::vector<unsigned> ids;
  std::vector<hs_expr_ext_t> exts;
};

void add_prefilter(const CompiledRule& cr, unsigned id, PatternSet& set) {
  const RuleElement& e = cr.rule.elements[cr.rule.fast_pattern];
  hs_expr_ext_t ext{};
  unsigned flags = 0;
  std::string expr;
  if (e.kind == RuleElement::Kind::kContent) {
    expr = render_literal(e.bytes);
    if (e.nocase) flags |= HS_FLAG_CASELESS;
    // offset/depth bound where the match may END, in absolute stream offsets (stream mode).
    if (e.offset.value_or(0) > 0) {
      ext.flags |= HS_EXT_FLAG_MIN_OFFSET;
      ext.min_offset = *e.offset + e.bytes.size();
    }
    if (e.depth) {
      ext.flags |= HS_EXT_FLAG_MAX_OFFSET;
      ext.max_offset = e.offset.value_or(0) + std::uint64_t{*e.depth};
    }
  } else {
    expr = e.extended ? "(?x)" + e.pattern : e.pattern;
    flags |= HS_FLAG_PREFILTER;  // a superset; PCRE2 confirms
    if (e.caseless) flags |= HS_FLAG_CASELESS;
    if (e.dotall) flags |= HS_FLAG_DOTALL;
    if (e.multiline) flags |= HS_FLAG_MULTILINE;
  }
  set.exprs.push_back(std::move(expr));
  set.flags.push_back(flags);
  set.ids.push_back(id);
  set.exts.push_back(ext);
}

rpc::Result<hs_database_t*> compile_set(const PatternSet& set,
                                        const std::vector<CompiledRule>& rules) {
  if (set.exprs.empty()) return static_cast<hs_database_t*>(nullptr);
  std::vector<const char*> exprs;
  std::vector<const hs_expr_ext_t*> exts;
  for (std::size_t i = 0; i < set.exprs.size(); ++i) {
    exprs.push_back(set.exprs[i].c_str());
    exts.push_back(&set.exts[i]);
  }
  hs_database_t* db = nullptr;
  hs_compile_error_t* cerr = nullptr;
  const hs_error_t rc = hs_compile_ext_multi(exprs.data(), set.flags.data(), set.ids.data(),
                                             exts.data(), static_cast<unsigned>(exprs.size()),
                                             HS_MODE_STREAM, nullptr, &db, &cerr);
  if (rc != HS_SUCCESS) {
    std::string msg = cerr != nullptr && cerr->message != nullptr ? cerr->message : "unknown";
    std::string where;
    if (cerr != nullptr && cerr->expression >= 0) {
      const auto& r = rules[set.ids[static_cast<std::size_t>(cerr->expression)]].rule;
      where = r.where() + "hyperscan cannot compile the prefilter of sid " + std::to_string(r.sid) +
              " ('" + set.exprs[static_cast<std::size_t>(cerr->expression)] + "'): ";
    } else {
      where = "hyperscan database build failed: ";
    }
    hs_free_compile_error(cerr);
    return rpc::Error{EINVAL, where + msg};
  }
  return db;
}

}  // namespace

rpc::Result<std::shared_ptr<const CompiledRules>> CompiledRules::build(std::vector<Rule> rules,
                                                                       const IdsOptions& options) {
  if (hs_valid_platform() != HS_SUCCESS) {
    return rpc::Error{ENOTSUP, "hyperscan: this CPU lacks SSSE3"};
  }
  std::shared_ptr<CompiledRules> out(new CompiledRules());
  out->options_ = options;
  out->rules_.reserve(rules.size());
  for (auto& r : rules) {
    CompiledRule cr;
    cr.rule = std::move(r);
    const Rule& rule = cr.rule;
    cr.action = rule.action == RuleAction::kAlert  ? Action::kAlert
                : rule.action == RuleAction::kPass ? Action::kPass
                                                   : Action::kBlock;
    cr.is_pass = rule.action == RuleAction::kPass;
    cr.rule_id = "sid:" + std::to_string(rule.sid);
    for (std::size_t k = 0; k < rule.elements.size(); ++k) {
      const RuleElement& e = rule.elements[k];
      CompiledElement ce;
      ce.later_depends = later_depends(rule.elements, k);
      if (e.kind == RuleElement::Kind::kPcre) {
        auto prog =
            PcreProgram::compile(e.pattern, {e.caseless, e.dotall, e.multiline, e.extended});
        if (!prog) {
          return rpc::Error{EINVAL, rule.where() + "bad pcre '" + e.pattern +
                                        "': " + prog.error().message + " in sid " +
                                        std::to_string(rule.sid)};
        }
        ce.pcre = std::move(*prog);
      } else if (e.nocase) {
        ce.folded = e.bytes;
        for (auto& c : ce.folded)
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      cr.elements.push_back(std::move(ce));
    }
    const auto& fp = rule.elements[rule.fast_pattern];
    cr.exact =
        rule.elements.size() == 1 && fp.kind == RuleElement::Kind::kContent && !fp.is_relative();
    compute_reach(cr);
    out->rules_.push_back(std::move(cr));
  }
  for (int f = 0; f < 2; ++f) {
    PatternSet set;
    const RuleFlow want = f == 0 ? RuleFlow::kToServer : RuleFlow::kToClient;
    for (std::size_t i = 0; i < out->rules_.size(); ++i) {
      const RuleFlow rf = out->rules_[i].rule.flow;
      if (rf == RuleFlow::kAny || rf == want)
        add_prefilter(out->rules_[i], static_cast<unsigned>(i), set);
    }
    auto db = compile_set(set, out->rules_);
    if (!db) return db.error();
    out->dbs_[f] = *db;
  }
  return std::shared_ptr<const CompiledRules>(std::move(out));
}

CompiledRules::~CompiledRules() {
  for (auto* db : dbs_) hs_free_database(db);
}

bool CompiledRules::header_applies(const Rule& rule, const StreamInfo& info, Flow flow) {
  switch (rule.protocol) {
    case RuleProtocol::kIp:
      break;
    case RuleProtocol::kTcp:
    case RuleProtocol::kHttp:
      if (info.protocol != 6) return false;
      break;
    case RuleProtocol::kUdp:
      if (info.protocol != 17) return false;
      break;
  }
  if (rule.flow == RuleFlow::kToServer && flow != Flow::kToServer) return false;
  if (rule.flow == RuleFlow::kToClient && flow != Flow::kToClient) return false;
  // The sender of this direction's bytes is the packet source: the client for to_server.
  const Endpoint& client = info.guest_is_client ? info.local : info.remote;
  const Endpoint& server = info.guest_is_client ? info.remote : info.local;
  const Endpoint& sender = flow == Flow::kToServer ? client : server;
  const Endpoint& receiver = flow == Flow::kToServer ? server : client;
  auto one_way = [&](const Endpoint& s, const Endpoint& d) {
    return rule.src.matches(s) && rule.src_ports.matches(s.port) && rule.dst.matches(d) &&
           rule.dst_ports.matches(d.port);
  };
  return one_way(sender, receiver) || (rule.bidirectional && one_way(receiver, sender));
}

}  // namespace tosec::svm::ids
