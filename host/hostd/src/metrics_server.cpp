// A minimal HTTP/1.0 responder for GET /metrics (docs/libraries.md: why not a library).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "tosec/hostd/metrics.h"

namespace tosec::hostd {

namespace {

void send_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

}  // namespace

rpc::Status MetricsServer::start(const std::string& address, std::function<std::string()> render) {
  if (auto s = cli::check_listen_address(address); !s) return s;
  const auto colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoul(address.substr(colon + 1))));
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) return rpc::errno_error("metrics: socket");
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 ||
      ::listen(listen_fd_, 16) < 0) {
    auto e = rpc::errno_error("metrics: cannot listen on " + address);
    ::close(listen_fd_);
    listen_fd_ = -1;
    return e;
  }
  socklen_t len = sizeof sa;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
  bound_ = address.substr(0, colon) + ":" + std::to_string(ntohs(sa.sin_port));
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  render_ = std::move(render);
  thread_ = std::thread([this] { serve(); });
  return {};
}

void MetricsServer::stop() {
  if (thread_.joinable()) {
    const std::uint64_t one = 1;
    if (::write(stop_fd_, &one, sizeof one) < 0) {
      // cannot happen for an eventfd below its maximum
    }
    thread_.join();
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
  listen_fd_ = stop_fd_ = -1;
}

void MetricsServer::serve() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (p[1].revents != 0) return;
    if ((p[0].revents & POLLIN) == 0) continue;
    const int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    // Read the request head, bounded in size and time: a slow or silent client cannot wedge it.
    std::string req;
    char buf[1024];
    while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos &&
           req.size() < 8192) {
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, 2000) <= 0) break;
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<std::size_t>(n));
    }
    const bool metrics = req.starts_with("GET /metrics ") || req.starts_with("GET /metrics?") ||
                         req.starts_with("GET / ");
    std::string body = metrics ? render_() : "not found: try /metrics\n";
    const char* status = metrics ? "200 OK" : "404 Not Found";
    const char* type = metrics ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain";
    send_all(c, std::string("HTTP/1.0 ") + status + "\r\nContent-Type: " + type +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n\r\n" + body);
    ::close(c);
  }
}

}  // namespace tosec::hostd
