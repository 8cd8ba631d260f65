// JSON string escaping for the hand-written JSON the platform emits (status objects, EVE alert
// lines): quotes, backslashes and control characters escaped, everything else passed through
// (UTF-8 stays UTF-8). One implementation for every role.
#pragma once

#include <string>
#include <string_view>

namespace tosec::rpc {

// The escaped text, without quotes.
std::string json_escape(std::string_view s);
// The escaped text in double quotes: a complete JSON string.
inline std::string json_quote(std::string_view s) { return "\"" + json_escape(s) + "\""; }

}  // namespace tosec::rpc
