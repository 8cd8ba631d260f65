// content:"..." decoding: |hex| blocks and the few escapes Suricata allows.
#include <cctype>

#include "tosec/svm/engines/ids_rule.h"

namespace tosec::svm::ids {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

rpc::Error content_error(std::string message) { return rpc::Error{EINVAL, std::move(message)}; }

}  // namespace

rpc::Result<std::string> decode_ids_content(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  bool in_hex = false;
  int pending_nibble = -1;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (in_hex) {
      if (c == '|') {
        if (pending_nibble >= 0) return content_error("odd number of hex digits in |...| block");
        in_hex = false;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        if (pending_nibble >= 0) return content_error("hex byte split by a space in |...| block");
      } else {
        const int v = hex_value(c);
        if (v < 0) return content_error(std::string("bad hex digit '") + c + "' in |...| block");
        if (pending_nibble < 0) {
          pending_nibble = v;
        } else {
          out += static_cast<char>(pending_nibble * 16 + v);
          pending_nibble = -1;
        }
      }
      continue;
    }
    if (c == '|') {
      in_hex = true;
      continue;
    }
    if (c == '\\') {
      if (i + 1 >= raw.size()) return content_error("content ends in a lone backslash");
      const char e = raw[++i];
      if (e != '"' && e != ';' && e != '\\' && e != ':') {
        return content_error(std::string("unsupported escape '\\") + e +
                             "' in content (use \\\" \\; \\\\ \\: or |hex|)");
      }
      out += e;
      continue;
    }
    if (c == '"') return content_error("unescaped '\"' inside content");
    out += c;
  }
  if (in_hex) return content_error("unterminated |...| hex block in content");
  if (out.empty()) return content_error("empty content");
  return out;
}

}  // namespace tosec::svm::ids
