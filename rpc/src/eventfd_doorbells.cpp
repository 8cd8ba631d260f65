#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <mutex>
#include <string>

#include "tosec/rpc/doorbell.h"

namespace tosec::rpc {

Result<UniqueFd> make_eventfd() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return errno_error("eventfd");
  return UniqueFd(fd);
}

void EventfdDoorbells::set_own(PeerId self, std::vector<UniqueFd> fds) {
  std::unique_lock lock(mu_);
  self_ = self;
  own_ = std::move(fds);
}

Status EventfdDoorbells::create_own(PeerId self, unsigned vectors) {
  std::vector<UniqueFd> fds;
  for (unsigned v = 0; v < vectors; ++v) {
    auto fd = make_eventfd();
    if (!fd) return fd.error();
    fds.push_back(std::move(*fd));
  }
  set_own(self, std::move(fds));
  return {};
}

void EventfdDoorbells::add_peer_vector(PeerId peer, UniqueFd fd) {
  std::unique_lock lock(mu_);
  peers_[peer].push_back(std::move(fd));
}

void EventfdDoorbells::remove_peer(PeerId peer) {
  std::unique_lock lock(mu_);
  peers_.erase(peer);
}

bool EventfdDoorbells::has_peer(PeerId peer) const {
  std::shared_lock lock(mu_);
  return peers_.count(peer) != 0;
}

std::size_t EventfdDoorbells::peer_vector_count(PeerId peer) const {
  std::shared_lock lock(mu_);
  auto it = peers_.find(peer);
  return it == peers_.end() ? 0 : it->second.size();
}

int EventfdDoorbells::own_fd(Vector vector) const {
  std::shared_lock lock(mu_);
  return vector < own_.size() ? own_[vector].get() : -1;
}

Status EventfdDoorbells::ring(PeerId peer, Vector vector) {
  std::shared_lock lock(mu_);
  int fd = -1;
  if (peer == self_ && vector < own_.size()) {
    fd = own_[vector].get();  // ringing ourselves is legal (ivshmem allows it too)
  } else if (auto it = peers_.find(peer); it != peers_.end() && vector < it->second.size()) {
    fd = it->second[vector].get();
  }
  if (fd < 0) {
    return Error{ENOENT,
                 "doorbell: no peer " + std::to_string(peer) + " vector " + std::to_string(vector)};
  }
  const std::uint64_t one = 1;
  // A full eventfd counter (EAGAIN) already means "rung": nothing is lost.
  if (::write(fd, &one, sizeof one) < 0 && errno != EAGAIN) {
    return errno_error("doorbell: write eventfd of peer " + std::to_string(peer));
  }
  return {};
}

Result<bool> EventfdDoorbells::wait(Vector vector, std::int64_t timeout_ns) {
  const int fd = own_fd(vector);
  if (fd < 0) return Error{ENOENT, "doorbell: no own vector " + std::to_string(vector)};
  // ppoll takes a timespec, so sub-millisecond timeouts are honoured.
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
    tsp = &ts;
  }
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    const int n = ::ppoll(&p, 1, tsp, nullptr);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("doorbell: ppoll");
    if (n == 0) return false;
    std::uint64_t count = 0;
    if (::read(fd, &count, sizeof count) < 0 && errno != EAGAIN) {
      return errno_error("doorbell: read eventfd");
    }
    return true;
  }
}

}  // namespace tosec::rpc
