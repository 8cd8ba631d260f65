// Loads ModSecurity + the rules once per SVM; hands out per-thread state.
#include "waf_engine.h"

#include <modsecurity/rules_set_properties.h>

#include <cerrno>
#include <filesystem>

#include "tosec/svm/engines/waf.h"
#include "waf_stream_inspector.h"

namespace tosec::svm::waf {
namespace {

// libmodsecurity prints every match to stdout unless a server log callback is set. Verdicts are
// built from Transaction::m_rulesMessages (which also holds the disruptive rule, never passed
// here), so the callback has nothing to do.
void ignore_server_log(void* /*data*/, const void* /*rule_message*/) {}

class WafThread final : public EngineThread {
 public:
  explicit WafThread(const WafEngine& engine) : engine_(engine) {}
  std::unique_ptr<StreamInspector> open_stream(const StreamInfo& info) override {
    return std::make_unique<WafStreamInspector>(engine_, info);
  }

 private:
  const WafEngine& engine_;
};

}  // namespace

rpc::Result<std::unique_ptr<WafEngine>> WafEngine::load(const EngineConfig& config) {
  auto options = parse_waf_options(config.svm_name, config.options);
  if (!options) return options.error();
  std::error_code ec;
  if (config.rules_path.empty() || !std::filesystem::is_regular_file(config.rules_path, ec)) {
    return rpc::Error{ENOENT, "waf '" + config.svm_name + "': rules_path '" + config.rules_path +
                                  "' is not a readable ModSecurity conf file"};
  }

  std::unique_ptr<WafEngine> engine(new WafEngine());
  engine->options_ = *options;
  engine->modsec_ = std::make_unique<modsecurity::ModSecurity>();
  engine->modsec_->setConnectorInformation("tosec-waf/1.0");
  engine->modsec_->setServerLogCb(ignore_server_log, modsecurity::RuleMessageLogProperty);

  engine->rules_ = std::make_unique<modsecurity::RulesSet>();
  const int loaded = engine->rules_->loadFromUri(config.rules_path.c_str());
  if (loaded < 0) {
    // ModSecurity's parser error names the file and line ("Rules error. File: x.conf. Line: 7.").
    std::string why = engine->rules_->getParserError();
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return rpc::Error{
        EINVAL, "waf '" + config.svm_name + "': cannot load " + config.rules_path + ": " + why};
  }

  // Without SecRuleEngine, ModSecurity evaluates rules but never intervenes: DetectionOnly.
  const int conf_state = engine->rules_->m_secRuleEngine;
  const bool conf_detect = conf_state == modsecurity::RulesSetProperties::DetectionOnlyRuleEngine ||
                           conf_state == modsecurity::RulesSetProperties::PropertyNotSetRuleEngine;
  engine->detect_only_ = engine->options_.detect_only || conf_detect;

  http::HttpParserOptions http_options;
  http_options.personality = engine->options_.personality;
  auto http = http::HttpParserConfig::create(http_options);
  if (!http) return http.error();
  engine->http_ = std::move(*http);

  const char* engine_state = "On";
  switch (engine->rules_->m_secRuleEngine) {
    case modsecurity::RulesSetProperties::DisabledRuleEngine:
      engine_state = "Off";
      break;
    case modsecurity::RulesSetProperties::DetectionOnlyRuleEngine:
      engine_state = "DetectionOnly";
      break;
    case modsecurity::RulesSetProperties::PropertyNotSetRuleEngine:
      engine_state = "not set (rules run, never intervene)";
      break;
    default:
      break;
  }
  engine->summary_ = std::to_string(loaded) + " rules from " + config.rules_path +
                     ", SecRuleEngine " + engine_state +
                     (engine->detect_only_ ? ", mode detect" : ", mode block");
  return engine;
}

rpc::Result<std::unique_ptr<EngineThread>> WafEngine::make_thread() {
  return std::unique_ptr<EngineThread>(std::make_unique<WafThread>(*this));
}

}  // namespace tosec::svm::waf

namespace tosec::svm {

rpc::Result<std::unique_ptr<Engine>> make_waf_engine(const EngineConfig& config) {
  auto engine = waf::WafEngine::load(config);
  if (!engine) return engine.error();
  return std::unique_ptr<Engine>(std::move(*engine));
}

}  // namespace tosec::svm
