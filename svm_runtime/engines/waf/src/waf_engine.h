// The WAF Engine and EngineThread (internal): what every inspector of the SVM shares.
#pragma once

#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>

#include <memory>
#include <string>

#include "tosec/svm/engines/http_stream.h"
#include "tosec/svm/inspector.h"
#include "waf_options.h"

namespace tosec::svm::waf {

// Immutable after load(); ModSecurity and RulesSet are read-only during transactions, which is
// how libmodsecurity is meant to be shared between threads.
class WafEngine final : public Engine {
 public:
  static rpc::Result<std::unique_ptr<WafEngine>> load(const EngineConfig& config);

  std::string_view kind() const override { return "waf"; }
  rpc::Result<std::unique_ptr<EngineThread>> make_thread() override;
  std::string summary() const override { return summary_; }

  modsecurity::ModSecurity* modsec() const { return modsec_.get(); }
  modsecurity::RulesSet* rules() const { return rules_.get(); }
  const std::shared_ptr<const http::HttpParserConfig>& http_config() const { return http_; }
  const WafOptions& options() const { return options_; }
  // mode = detect, or SecRuleEngine DetectionOnly in the conf.
  bool detect_only() const { return detect_only_; }

 private:
  WafEngine() = default;

  std::unique_ptr<modsecurity::ModSecurity> modsec_;
  std::unique_ptr<modsecurity::RulesSet> rules_;
  std::shared_ptr<const http::HttpParserConfig> http_;
  WafOptions options_;
  bool detect_only_ = false;
  std::string summary_;
};

}  // namespace tosec::svm::waf
