// Process-wide libclamav setup: cl_init() exactly once, and a message callback that lets a
// loading thread capture libclamav's error text (it otherwise only prints it to stderr), so load
// errors can say why a signature file was rejected.
#pragma once

#include <string>

#include "tosec/rpc/status.h"

namespace tosec::svm::av {

// cl_init(CL_INIT_DEFAULT) under std::call_once; later calls return the first call's result.
rpc::Status init_clamav_once();

// While alive, libclamav errors (and warnings unless errors_only) raised on this thread are
// appended to `sink` ("; "-separated) instead of going to stderr. Scans use errors_only: a
// warning about a malformed file in guest traffic is not a scan failure.
class ClamMessageCapture {
 public:
  explicit ClamMessageCapture(std::string* sink, bool errors_only = false);
  ~ClamMessageCapture();
  ClamMessageCapture(const ClamMessageCapture&) = delete;
  ClamMessageCapture& operator=(const ClamMessageCapture&) = delete;

 private:
  std::string* previous_sink_;
  bool previous_errors_only_;
};

}  // namespace tosec::svm::av
