// The kernel side of the TOE tests: a TCP listener on 127.0.0.1 and an echo loop, the peer the
// TOE's kernel backend talks to on behalf of a fake guest.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstddef>
#include <vector>

#include "fake_guest.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::tovm::test {

inline sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A kernel TCP listener on 127.0.0.1:ephemeral (port 0 if it could not be set up).
struct KernelListener {
  rpc::UniqueFd fd;
  std::uint16_t port = 0;
  KernelListener() {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = loopback(0);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    if (::listen(fd.get(), 16) != 0) return;
    socklen_t l = sizeof a;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &l);
    port = ntohs(a.sin_port);
  }
  rpc::UniqueFd accept_one(int timeout_ms = kWaitMs) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return {};
    return rpc::UniqueFd(::accept4(fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  }
};

// Sends back every byte read from `fd` until `bytes` were echoed, EOF or an error.
inline void echo_bytes(int fd, std::size_t bytes) {
  std::vector<char> buf(65536);
  for (std::size_t total = 0; total < bytes;) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) return;
    total += static_cast<std::size_t>(n);
    for (ssize_t off = 0; off < n;) {
      const ssize_t w =
          ::send(fd, buf.data() + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
      if (w <= 0) return;
      off += w;
    }
  }
}

}  // namespace tosec::tovm::test
