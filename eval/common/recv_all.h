// Blocking read of exactly n bytes for the eval/ tools (EINTR is retried); false on EOF or error.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>

namespace tosec::eval {

inline bool recv_all(int fd, char* buf, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd, buf + got, n - got, 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return false;
    }
    got += static_cast<std::size_t>(r);
  }
  return true;
}

}  // namespace tosec::eval
