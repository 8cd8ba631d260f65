#include "tosec/svm/literal_engine.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace tosec::svm {

namespace {

struct Rule {
  Action action = Action::kBlock;
  std::string id;
  std::string text;
};

// Decodes \xNN, \n, \r, \t and \\; false (with `why`) on a bad escape.
bool unescape(const std::string& in, std::string& out, std::string& why) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '\\') {
      out += in[i];
      continue;
    }
    if (++i == in.size()) {
      why = "trailing backslash";
      return false;
    }
    switch (in[i]) {
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case '\\':
        out += '\\';
        break;
      case 'x': {
        const std::string hex = in.substr(i + 1, 2);
        if (hex.size() != 2 || !std::isxdigit(static_cast<unsigned char>(hex[0])) ||
            !std::isxdigit(static_cast<unsigned char>(hex[1]))) {
          why = "bad \\x escape '\\x" + hex + "'";
          return false;
        }
        out += static_cast<char>(std::stoi(hex, nullptr, 16));
        i += 2;
        break;
      }
      default:
        why = std::string("unknown escape '\\") + in[i] + "'";
        return false;
    }
  }
  return true;
}

class LiteralInspector final : public StreamInspector {
 public:
  LiteralInspector(const std::vector<Rule>& rules, std::size_t keep) : rules_(rules), keep_(keep) {}

  Verdict inspect(const Payload& p) override {
    std::string& tail = tails_[p.direction == Direction::kOutbound ? 0 : 1];
    // Search tail + payload, so a pattern split over payloads is found; only matches that end
    // inside the new bytes count (earlier ones were reported already).
    window_.assign(tail);
    window_.append(reinterpret_cast<const char*>(p.bytes.data()), p.bytes.size());
    Verdict v;
    for (const Rule& r : rules_) {
      const std::size_t at = window_.find(r.text);
      if (at == std::string::npos || at + r.text.size() <= tail.size()) continue;
      v.add(Finding{r.action, r.id, "literal '" + printable(r.text) + "' seen", "literal"});
    }
    const std::size_t k = std::min(keep_, window_.size());
    tail.assign(window_, window_.size() - k, k);
    return v;
  }

 private:
  static std::string printable(const std::string& s) {
    std::string out;
    for (char c : s) out += (c >= 0x20 && c < 0x7f) ? c : '.';
    return out;
  }
  const std::vector<Rule>& rules_;
  std::size_t keep_;
  std::string tails_[2];
  std::string window_;
};

class LiteralThread final : public EngineThread {
 public:
  LiteralThread(const std::vector<Rule>& rules, std::size_t keep) : rules_(rules), keep_(keep) {}
  std::unique_ptr<StreamInspector> open_stream(const StreamInfo&) override {
    return std::make_unique<LiteralInspector>(rules_, keep_);
  }

 private:
  const std::vector<Rule>& rules_;
  std::size_t keep_;
};

class LiteralEngine final : public Engine {
 public:
  explicit LiteralEngine(std::vector<Rule> rules) : rules_(std::move(rules)) {
    for (const Rule& r : rules_) keep_ = std::max(keep_, r.text.size() - 1);
  }
  std::string_view kind() const override { return "literal"; }
  rpc::Result<std::unique_ptr<EngineThread>> make_thread() override {
    return std::unique_ptr<EngineThread>(std::make_unique<LiteralThread>(rules_, keep_));
  }
  std::string summary() const override { return std::to_string(rules_.size()) + " literal rules"; }

 private:
  std::vector<Rule> rules_;
  std::size_t keep_ = 0;
};

}  // namespace

rpc::Result<std::unique_ptr<Engine>> make_literal_engine(const EngineConfig& config) {
  std::ifstream in(config.rules_path);
  if (!in) {
    return rpc::Error{ENOENT, "literal engine: cannot read rules file '" + config.rules_path + "'"};
  }
  std::vector<Rule> rules;
  std::string line;
  for (std::size_t lineno = 1; std::getline(in, line); ++lineno) {
    const auto where = config.rules_path + ":" + std::to_string(lineno);
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto sp1 = line.find(' ', first);
    const auto sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string::npos || sp2 + 1 >= line.size()) {
      return rpc::Error{EINVAL,
                        where + ": expected '<block|alert> <id> <text>', got '" + line + "'"};
    }
    Rule r;
    const std::string verb = line.substr(first, sp1 - first);
    if (verb == "block") {
      r.action = Action::kBlock;
    } else if (verb == "alert") {
      r.action = Action::kAlert;
    } else {
      return rpc::Error{EINVAL, where + ": unknown action '" + verb + "' (block or alert)"};
    }
    r.id = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string why;
    if (!unescape(line.substr(sp2 + 1), r.text, why)) {
      return rpc::Error{EINVAL, where + ": " + why};
    }
    if (r.text.empty()) return rpc::Error{EINVAL, where + ": empty pattern"};
    rules.push_back(std::move(r));
  }
  if (rules.empty()) {
    return rpc::Error{EINVAL, "literal engine: no rules in '" + config.rules_path + "'"};
  }
  return std::unique_ptr<Engine>(std::make_unique<LiteralEngine>(std::move(rules)));
}

}  // namespace tosec::svm
