// Command-line numbers of the eval/ tools: the whole string, decimal, within [lo, hi].
#pragma once

#include <charconv>
#include <string_view>

namespace tosec::eval {

inline bool parse_ulong(std::string_view s, unsigned long lo, unsigned long hi,
                        unsigned long& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size() && out >= lo && out <= hi;
}

}  // namespace tosec::eval
