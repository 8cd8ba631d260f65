// Turns what ModSecurity recorded for a transaction into Findings.
#pragma once

#include <modsecurity/transaction.h>

#include <string_view>

#include "tosec/svm/inspector.h"

namespace tosec::svm::waf {

// Adds one finding per distinct rule id in t.m_rulesMessages after the first `from` (it holds every
// logged match, including the disruptive 949110/959100 the log callback never sees). Disruptive
// rules get `decisive`, the contributing ones kAlert. If no recorded message was disruptive (a rule
// with nolog decided), the rule id and message are taken from the intervention log
// (`[id "949110"] ... [msg "..."]`), else a finding names the HTTP status.
void add_findings(const modsecurity::Transaction& t, Action decisive,
                  std::string_view intervention_log, int status, Verdict& verdict,
                  std::size_t from = 0);

}  // namespace tosec::svm::waf
