#include "waf_options.h"

#include <cerrno>
#include <charconv>

namespace tosec::svm::waf {
namespace {

rpc::Error bad(const std::string& svm, const std::string& key, const std::string& value,
               const char* expected) {
  return rpc::Error{EINVAL, "waf '" + svm + "': option " + key + " = '" + value +
                                "' is not valid (expected " + expected + ")"};
}

}  // namespace

rpc::Result<WafOptions> parse_waf_options(const std::string& svm_name,
                                          const std::map<std::string, std::string>& options) {
  WafOptions out;
  for (const auto& [key, value] : options) {
    if (key == "mode") {
      if (value == "block") {
        out.detect_only = false;
      } else if (value == "detect") {
        out.detect_only = true;
      } else {
        return bad(svm_name, key, value, "block or detect");
      }
    } else if (key == "parse_error") {
      if (value == "block") {
        out.parse_error_action = Action::kBlock;
      } else if (value == "alert") {
        out.parse_error_action = Action::kAlert;
      } else if (value == "pass") {
        out.parse_error_action = Action::kPass;
      } else {
        return bad(svm_name, key, value, "block, alert or pass");
      }
    } else if (key == "personality") {
      if (value == "ids") {
        out.personality = http::Personality::kIds;
      } else if (value == "apache2") {
        out.personality = http::Personality::kApache2;
      } else if (value == "iis7") {
        out.personality = http::Personality::kIis7;
      } else if (value == "minimal") {
        out.personality = http::Personality::kMinimal;
      } else {
        return bad(svm_name, key, value, "ids, apache2, iis7 or minimal");
      }
    } else if (key == "max_pipelined") {
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || n == 0) {
        return bad(svm_name, key, value, "a positive integer");
      }
      out.max_pipelined = n;
    } else {
      return rpc::Error{EINVAL, "waf '" + svm_name + "': unknown option '" + key +
                                    "' (known: mode, parse_error, personality, max_pipelined)"};
    }
  }
  return out;
}

}  // namespace tosec::svm::waf
