#include "tosec/rpc/status.h"

#include <cstring>

namespace tosec::rpc {

Error errno_error(const std::string& what) {
  const int saved = errno;
  return Error{saved, what + ": " + std::strerror(saved)};
}

}  // namespace tosec::rpc
