#include "rule_lexer.h"

#include <cctype>

namespace tosec::svm::ids {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

rpc::Error lex_error(std::string message) { return rpc::Error{EINVAL, std::move(message)}; }

}  // namespace

std::vector<LogicalRule> split_logical_rules(std::string_view text) {
  std::vector<LogicalRule> rules;
  LogicalRule current;
  bool continuing = false;
  unsigned line_no = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string_view body = trim(line);
    if (!continuing) {
      if (body.empty() || body.front() == '#') continue;
      current = LogicalRule{line_no, {}};
    }
    const bool continues = !body.empty() && body.back() == '\\';
    if (continues) body.remove_suffix(1);
    if (!current.text.empty() && !body.empty()) current.text += ' ';
    current.text += body;
    continuing = continues;
    if (!continuing) rules.push_back(std::move(current));
  }
  if (continuing && !current.text.empty()) rules.push_back(std::move(current));
  return rules;
}

rpc::Result<LexedRule> lex_rule(std::string_view text) {
  LexedRule out;
  const auto open = text.find('(');
  if (open == std::string_view::npos) return lex_error("missing '(' before the rule options");
  // Header: whitespace-separated, but a [list] may contain spaces ("[1.2.3.4, 5.6.7.8]").
  std::string_view header = text.substr(0, open);
  std::string token;
  int depth = 0;
  for (char c : header) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (std::isspace(static_cast<unsigned char>(c)) && depth == 0) {
      if (!token.empty()) out.header.push_back(std::move(token));
      token.clear();
    } else if (!std::isspace(static_cast<unsigned char>(c))) {
      token += c;
    }
  }
  if (!token.empty()) out.header.push_back(std::move(token));
  if (depth != 0) return lex_error("unbalanced '[' ']' in the rule header");

  std::string_view rest = trim(text.substr(open + 1));
  if (rest.empty() || rest.back() != ')') return lex_error("missing ')' at the end of the rule");
  rest.remove_suffix(1);

  // Options: ';' ends one unless quoted or escaped.
  std::string current;
  bool quoted = false;
  bool any = false;
  auto flush = [&]() -> rpc::Status {
    std::string_view opt = trim(current);
    if (opt.empty()) {
      current.clear();
      return {};
    }
    RuleOption o;
    // The name ends at the first ':' (names never contain quotes).
    const auto colon = opt.find(':');
    if (colon == std::string_view::npos) {
      o.name = std::string(trim(opt));
    } else {
      o.name = std::string(trim(opt.substr(0, colon)));
      o.value = std::string(trim(opt.substr(colon + 1)));
      o.has_value = true;
    }
    if (o.name.empty()) return lex_error("empty option name in '" + std::string(opt) + "'");
    out.options.push_back(std::move(o));
    current.clear();
    any = true;
    return {};
  };
  for (std::size_t i = 0; i < rest.size(); ++i) {
    const char c = rest[i];
    if (c == '\\' && i + 1 < rest.size()) {
      current += c;
      current += rest[++i];
      continue;
    }
    if (c == '"') quoted = !quoted;
    if (c == ';' && !quoted) {
      if (auto st = flush(); !st) return st.error();
      continue;
    }
    current += c;
  }
  if (quoted) return lex_error("unterminated '\"' in the rule options");
  if (auto st = flush(); !st) return st.error();
  if (!any) return lex_error("rule has no options");
  return out;
}

rpc::Result<QuotedValue> unquote_option_value(std::string_view value) {
  QuotedValue q;
  value = trim(value);
  if (!value.empty() && value.front() == '!') {
    q.negated = true;
    value = trim(value.substr(1));
  }
  if (value.size() < 2 || value.front() != '"' || value.back() != '"') {
    return lex_error("value must be in double quotes");
  }
  q.inner = std::string(value.substr(1, value.size() - 2));
  return q;
}

}  // namespace tosec::svm::ids
