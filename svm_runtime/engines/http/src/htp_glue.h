// Internal glue between libhtp's C hooks and HttpStreamParser::Impl (not installed).
#pragma once

#include <htp/htp.h>

#include <string_view>

namespace tosec::svm::http::detail {

// Registers the hooks that forward libhtp's callbacks to the HttpEvents of the parser that owns
// the connection (found through htp_connp_get_user_data).
void register_hooks(htp_cfg_t* cfg);

// bstr_ptr() is a macro full of C casts; this is the same thing, typed.
inline std::string_view view(const bstr* b) {
  if (b == nullptr) return {};
  const unsigned char* p =
      b->realptr != nullptr ? b->realptr : reinterpret_cast<const unsigned char*>(b + 1);
  return {reinterpret_cast<const char*>(p), b->len};
}

}  // namespace tosec::svm::http::detail
