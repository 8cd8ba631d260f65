// make_acl_engine(): loads the rules file once; each stream is decided at open_stream() and gets
// an inspector that either does nothing per payload, or reports its decision on the first one.
#include <fstream>
#include <sstream>

#include "acl_rules.h"
#include "tosec/svm/engines/acl.h"

namespace tosec::svm {
namespace {

using acl::RuleAction;

struct AclShared {
  acl::RuleSet rules;
  RuleAction default_action = RuleAction::kAllow;
  Action deny_action = Action::kBlock;  // kAlert with mode=detect
};

// Allowed streams: no per-payload work at all.
class PassInspector final : public StreamInspector {
 public:
  Verdict inspect(const Payload&) override { return {}; }
};

// Denied (or alert-rule) streams: the decision is reported with the first payload. A block is
// repeated if the runtime asks again; an alert is reported once, then the stream passes.
class DecidedInspector final : public StreamInspector {
 public:
  explicit DecidedInspector(Finding f) : finding_(std::move(f)) {}
  Verdict inspect(const Payload&) override {
    if (reported_ && finding_.action != Action::kBlock) return {};
    reported_ = true;
    Verdict v;
    v.add(finding_);
    return v;
  }

 private:
  Finding finding_;
  bool reported_ = false;
};

class AclThread final : public EngineThread {
 public:
  explicit AclThread(std::shared_ptr<const AclShared> shared) : shared_(std::move(shared)) {}

  std::unique_ptr<StreamInspector> open_stream(const StreamInfo& info) override {
    const acl::Rule* rule = acl::first_match(shared_->rules, info);
    const RuleAction action = rule != nullptr ? rule->action : shared_->default_action;
    if (action == RuleAction::kAllow) return std::make_unique<PassInspector>();
    Finding f;
    f.action = action == RuleAction::kAlert ? Action::kAlert : shared_->deny_action;
    f.category = "acl";
    if (rule != nullptr) {
      f.rule_id = "acl:" + std::to_string(rule->line);
      f.message = rule->msg;
    } else {
      f.rule_id = "acl:default";
      f.message = "default deny";
    }
    return std::make_unique<DecidedInspector>(std::move(f));
  }

 private:
  std::shared_ptr<const AclShared> shared_;
};

class AclEngine final : public Engine {
 public:
  explicit AclEngine(std::shared_ptr<const AclShared> shared) : shared_(std::move(shared)) {}
  std::string_view kind() const override { return "acl"; }
  rpc::Result<std::unique_ptr<EngineThread>> make_thread() override {
    return std::unique_ptr<EngineThread>(std::make_unique<AclThread>(shared_));
  }
  std::string summary() const override {
    return std::to_string(shared_->rules.rules.size()) + " rules, default " +
           (shared_->default_action == RuleAction::kAllow ? "allow" : "deny") +
           (shared_->deny_action == Action::kBlock ? ", mode=block" : ", mode=detect");
  }

 private:
  std::shared_ptr<const AclShared> shared_;
};

rpc::Error option_error(const std::string& key, const std::string& value, const char* expected) {
  return rpc::Error{EINVAL, "acl option '" + key + "' = '" + value + "': expected " + expected};
}

}  // namespace

rpc::Result<std::unique_ptr<Engine>> make_acl_engine(const EngineConfig& config) {
  auto shared = std::make_shared<AclShared>();
  for (const auto& [key, value] : config.options) {
    if (key == "default") {
      if (value != "allow" && value != "deny") return option_error(key, value, "allow or deny");
      shared->default_action = value == "allow" ? RuleAction::kAllow : RuleAction::kDeny;
    } else if (key == "mode") {
      if (value != "block" && value != "detect") return option_error(key, value, "block or detect");
      shared->deny_action = value == "block" ? Action::kBlock : Action::kAlert;
    } else {
      return rpc::Error{EINVAL, "acl option '" + key + "': unknown option (default, mode)"};
    }
  }
  if (config.rules_path.empty()) {
    return rpc::Error{EINVAL, "acl engine '" + config.svm_name + "': rules_path is empty"};
  }
  std::ifstream in(config.rules_path, std::ios::binary);
  if (!in) return rpc::errno_error("acl rules '" + config.rules_path + "': open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return rpc::Error{EIO, "acl rules '" + config.rules_path + "': read failed"};
  auto rules = acl::parse_rules(text.str(), config.rules_path);
  if (!rules) return rules.error();
  shared->rules = std::move(*rules);
  // The file's own `default` line wins over the option: the file is the policy.
  if (shared->rules.default_action) shared->default_action = *shared->rules.default_action;
  return std::unique_ptr<Engine>(std::make_unique<AclEngine>(std::move(shared)));
}

}  // namespace tosec::svm
