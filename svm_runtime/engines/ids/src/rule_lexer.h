// Splits rule text into logical rules and a rule into header tokens and options. Knows quoting
// and escapes, nothing about what the words mean (rule_parser.cpp does).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/status.h"

namespace tosec::svm::ids {

struct LogicalRule {
  unsigned line = 0;  // first physical line of the rule (1-based)
  std::string text;   // continuation lines joined, comments and blank lines dropped
};

// Comments (# at the start of a line) and blank lines are skipped; a line ending in a backslash
// continues on the next one.
std::vector<LogicalRule> split_logical_rules(std::string_view text);

struct RuleOption {
  std::string name;
  std::string value;  // trimmed; empty when the option has no ':'
  bool has_value = false;
};

struct LexedRule {
  std::vector<std::string> header;  // action proto src sport dir dst dport ([lists] kept whole)
  std::vector<RuleOption> options;
};

// Error messages are bare ("missing ')' ..."); the caller prefixes file and line.
rpc::Result<LexedRule> lex_rule(std::string_view text);

// `"..."` or `!"..."` -> inner text (escapes kept) and the negation; error if not quoted.
struct QuotedValue {
  bool negated = false;
  std::string inner;
};
rpc::Result<QuotedValue> unquote_option_value(std::string_view value);

}  // namespace tosec::svm::ids
