#include "modsec_findings.h"

#include <modsecurity/rule_message.h>

#include <algorithm>
#include <string>

namespace tosec::svm::waf {
namespace {

// The value of `[key "value"]` in an intervention log line, or "".
std::string_view log_field(std::string_view log, std::string_view key) {
  const std::string needle = "[" + std::string(key) + " \"";
  const std::size_t at = log.find(needle);
  if (at == std::string_view::npos) return {};
  const std::size_t from = at + needle.size();
  const std::size_t to = log.find("\"]", from);
  if (to == std::string_view::npos) return {};
  return log.substr(from, to - from);
}

// CRS tags rules "application-multi", "language-multi", "platform-multi", "attack-sqli",
// "paranoia-level/1", "OWASP_CRS", ...: the attack-* tag says best what the rule is about.
std::string category_of(const modsecurity::RuleMessage& m) {
  for (const std::string& tag : m.m_tags) {
    if (tag.rfind("attack-", 0) == 0) return tag;
  }
  return m.m_tags.empty() ? std::string() : m.m_tags.front();
}

}  // namespace

void add_findings(const modsecurity::Transaction& t, Action decisive,
                  std::string_view intervention_log, int status, Verdict& verdict,
                  std::size_t from) {
  bool have_decisive = false;
  std::size_t i = 0;
  for (const modsecurity::RuleMessage& m : t.m_rulesMessages) {
    if (i++ < from) continue;
    std::string id = std::to_string(m.m_ruleId);
    const bool dup = std::any_of(verdict.findings.begin(), verdict.findings.end(),
                                 [&](const Finding& f) { return f.rule_id == id; });
    if (dup) continue;
    have_decisive = have_decisive || m.m_isDisruptive;
    verdict.add(Finding{m.m_isDisruptive ? decisive : Action::kAlert, std::move(id), m.m_message,
                        category_of(m)});
  }
  if (have_decisive) return;
  std::string_view id = log_field(intervention_log, "id");
  std::string_view msg = log_field(intervention_log, "msg");
  verdict.add(Finding{decisive,
                      id.empty() ? std::string("modsecurity") : std::string(id),
                      msg.empty()
                          ? "ModSecurity intervention, HTTP status " + std::to_string(status)
                          : std::string(msg),
                      {}});
}

}  // namespace tosec::svm::waf
