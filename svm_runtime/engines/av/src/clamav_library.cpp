#include "clamav_library.h"

#include <clamav.h>

#include <cstdio>
#include <mutex>

namespace tosec::svm::av {
namespace {

thread_local std::string* t_capture = nullptr;
thread_local bool t_errors_only = false;

void on_clamav_message(enum cl_msg severity, const char* fullmsg, const char* msg, void*) {
  if (severity < CL_MSG_WARN) return;  // verbose chatter
  if (t_capture != nullptr) {
    if (t_errors_only && severity < CL_MSG_ERROR) return;
    std::string line = msg != nullptr ? msg : "";
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) {
      if (!t_capture->empty()) t_capture->append("; ");
      t_capture->append(line);
    }
    return;
  }
  // Outside a load this is a scan-time problem; keep libclamav's own wording.
  std::fputs(fullmsg != nullptr ? fullmsg : "", stderr);
}

}  // namespace

rpc::Status init_clamav_once() {
  static std::once_flag once;
  static cl_error_t result = CL_SUCCESS;
  std::call_once(once, [] {
    // Installed before cl_init so its own messages are routed too (clamav.h allows that).
    cl_set_clcb_msg(on_clamav_message);
    result = cl_init(CL_INIT_DEFAULT);
  });
  if (result != CL_SUCCESS) {
    return rpc::Error{EIO, std::string("av: cl_init failed: ") + cl_strerror(result)};
  }
  return {};
}

ClamMessageCapture::ClamMessageCapture(std::string* sink, bool errors_only)
    : previous_sink_(t_capture), previous_errors_only_(t_errors_only) {
  t_capture = sink;
  t_errors_only = errors_only;
}

ClamMessageCapture::~ClamMessageCapture() {
  t_capture = previous_sink_;
  t_errors_only = previous_errors_only_;
}

}  // namespace tosec::svm::av
