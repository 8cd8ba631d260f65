// The two holders of end B: see placeholders.h.
#include "tosec/tovm/placeholders.h"

#include <sys/epoll.h>

#include "tosec/rpc/agent_lane.h"

namespace tosec::tovm {

// ---- process mode ----------------------------------------------------------------------------

LocalPlaceholders::LocalPlaceholders(std::uint32_t max_sockets, int epoll_fd,
                                     std::function<std::uint64_t(std::uint32_t)> token_of,
                                     std::function<void(const std::string&)> log)
    : ends_(max_sockets),
      a_(max_sockets),
      watched_(max_sockets),
      scratch_(65536),
      epoll_fd_(epoll_fd),
      token_of_(std::move(token_of)),
      log_(std::move(log)) {}

rpc::Status LocalPlaceholders::attach(std::uint32_t id, const PlaceholderOrigin&, rpc::UniqueFd b) {
  auto end = rpc::PlaceholderEnd::adopt(std::move(b));
  if (!end) return end.error();
  ends_[id] = std::move(*end);
  a_[id] = {};
  // EPOLLRDHUP alone: B's hang-up (the guest's last close of A) is the only event wanted.
  epoll_event e{};
  e.events = EPOLLRDHUP;
  e.data.u64 = token_of_(id);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, ends_[id].fd(), &e) != 0) {
    log_(rpc::errno_error("epoll_ctl(ADD)").message);
  } else {
    watched_[id] = 1;
  }
  return {};
}

void LocalPlaceholders::unwatch(std::uint32_t id) {
  // Once: the hang-up unwatches, and so does the release that follows it.
  if (watched_[id] == 0) return;
  watched_[id] = 0;
  (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, ends_[id].fd(), nullptr);
}

bool LocalPlaceholders::on_hangup(std::uint32_t id, std::uint32_t events) {
  if (!ends_[id].valid() || (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) == 0) return false;
  unwatch(id);  // B stays open until the socket is freed
  return true;
}

bool LocalPlaceholders::prepare_kill(std::uint32_t id) {
  if (!ends_[id].valid()) return false;
  auto a = watch_.peer_of(ends_[id].fd());
  if (!a) {
    // ENOTCONN: A is already gone; the hang-up on B closes the socket as usual. Anything else
    // (no sock_diag): A stays readable and writable, without POLLERR/POLLHUP.
    if (a.error().code != ENOTCONN && !watch_failed_logged_) {
      watch_failed_logged_ = true;
      log_("reset/refused connections are not mirrored as POLLHUP/POLLERR: " + a.error().message);
    }
    return false;
  }
  a_[id] = *a;
  return true;
}

void LocalPlaceholders::kill(std::uint32_t id) {
  if (!ends_[id].valid()) return;
  unwatch(id);
  ends_[id].reset();
}

void LocalPlaceholders::release(std::uint32_t id) {
  if (!ends_[id].valid()) return;
  unwatch(id);
  ends_[id].reset();
}

// ---- VM mode ---------------------------------------------------------------------------------

AgentPlaceholders::AgentPlaceholders(std::uint32_t max_sockets,
                                     std::function<void(const rpc::Descriptor&)> emit)
    : sockets_(max_sockets), emit_(std::move(emit)) {}

rpc::Descriptor AgentPlaceholders::message(std::uint16_t op, std::uint32_t id,
                                           std::uint32_t generation) {
  rpc::Descriptor d{};
  d.op = op;
  d.socket = id;
  d.arg1 = generation;
  return d;
}

rpc::Status AgentPlaceholders::attach(std::uint32_t id, const PlaceholderOrigin& origin,
                                      rpc::UniqueFd) {
  sockets_[id] = Held{true, false, origin.generation};
  rpc::Descriptor d = message(rpc::agent_op(rpc::AgentOp::kAgentBind), id, origin.generation);
  d.request_id = origin.request_id;
  d.arg0 = origin.lane;
  emit_(d);
  return {};
}

void AgentPlaceholders::send(std::uint16_t op, std::uint32_t id) {
  if (sockets_[id].bound) emit_(message(op, id, sockets_[id].generation));
}

void AgentPlaceholders::signal(std::uint32_t id) {
  send(rpc::agent_op(rpc::AgentOp::kAgentSignal), id);
}

void AgentPlaceholders::shut_write(std::uint32_t id) {
  send(rpc::agent_op(rpc::AgentOp::kAgentShutWr), id);
}

void AgentPlaceholders::drain(std::uint32_t id) {
  send(rpc::agent_op(rpc::AgentOp::kAgentDrain), id);
}

void AgentPlaceholders::kill(std::uint32_t id) {
  send(rpc::agent_op(rpc::AgentOp::kAgentKill), id);
  if (!sockets_[id].bound) return;
  sockets_[id].bound = false;
  sockets_[id].killed = true;  // the agent watches A and sends kAgentHangup
}

void AgentPlaceholders::release(std::uint32_t id) {
  Held& h = sockets_[id];
  if (!h.bound && !h.killed) return;
  // Also after a kill: the agent stops watching A (no hangup is wanted any more).
  emit_(message(rpc::agent_op(rpc::AgentOp::kAgentRelease), id, h.generation));
  h = Held{};
}

bool AgentPlaceholders::matches(std::uint32_t id, std::uint64_t generation) const {
  if (id >= sockets_.size()) return false;
  const Held& h = sockets_[id];
  return (h.bound || h.killed) && h.generation == generation;
}

void AgentPlaceholders::forget_all() {
  for (auto& h : sockets_) h = Held{};
}

}  // namespace tosec::tovm
