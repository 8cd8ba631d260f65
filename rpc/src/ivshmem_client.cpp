#include "tosec/rpc/ivshmem_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstdint>
#include <cstring>

#include "tosec/rpc/ivshmem_protocol.h"

namespace tosec::rpc {

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr std::int64_t kNoDeadline = INT64_MAX;

// A negative timeout means "wait forever", as for poll().
std::int64_t deadline_after(int timeout_ms) {
  return timeout_ms < 0 ? kNoDeadline : now_ms() + timeout_ms;
}

// Milliseconds left for poll(): -1 without a deadline, 0 once it passed.
int left_ms(std::int64_t deadline_ms) {
  if (deadline_ms == kNoDeadline) return -1;
  const std::int64_t left = deadline_ms - now_ms();
  return left <= 0 ? 0 : static_cast<int>(left);
}

// Caps one drain so a flood of announcements cannot starve the caller's other work; the socket
// stays readable and the next call continues.
constexpr std::size_t kMaxMessagesPerDrain = 4096;

Result<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Error{ENAMETOOLONG, "ivshmem: socket path '" + path + "' is empty or longer than " +
                                   std::to_string(sizeof addr.sun_path - 1) + " bytes"};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_error("ivshmem: socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) {
    return errno_error("ivshmem: connect(" + path + ")");
  }
  return fd;
}

}  // namespace

IvshmemClient::IvshmemClient(IvshmemClientOptions options) : options_(options) {}

IvshmemClient::~IvshmemClient() = default;

Error IvshmemClient::fail(Error e) {
  sock_.reset();
  return e;
}

bool IvshmemClient::complete(PeerId id) const {
  auto it = peer_vecs_.find(id);
  return it != peer_vecs_.end() && it->second == options_.vectors;
}

std::vector<PeerId> IvshmemClient::peers() const {
  std::vector<PeerId> out;
  for (const auto& [id, n] : peer_vecs_) {
    if (n == options_.vectors) out.push_back(id);
  }
  return out;
}

Status IvshmemClient::connect(const std::string& socket_path) {
  if (sock_.valid() || own_done_) return Error{EISCONN, "ivshmem: client already connected"};
  if (options_.vectors == 0 || options_.vectors > 0x10000) {
    return Error{EINVAL,
                 "ivshmem: vectors must be in [1, 65536], not " + std::to_string(options_.vectors)};
  }
  auto fd = connect_unix(socket_path);
  if (!fd) return fd.error();
  sock_ = std::move(*fd);
  const std::int64_t deadline = deadline_after(options_.connect_timeout_ms);
  const std::string who = "ivshmem server " + socket_path;

  auto version = ivshmem::recv_msg(sock_.get(), left_ms(deadline));
  if (!version) return fail({version.error().code, who + ": version: " + version.error().message});
  if (version->value != ivshmem::kProtocolVersion) {
    return fail({EPROTO, who + " speaks protocol version " + std::to_string(version->value) +
                             ", this client speaks version " +
                             std::to_string(ivshmem::kProtocolVersion)});
  }
  if (version->fd.valid()) return fail({EPROTO, who + ": version message carried an fd"});

  auto id = ivshmem::recv_msg(sock_.get(), left_ms(deadline));
  if (!id) return fail({id.error().code, who + ": peer id: " + id.error().message});
  if (id->fd.valid() || id->value < 0 || id->value > ivshmem::kMaxPeerId) {
    return fail({EPROTO, who + " sent an invalid id message (" + std::to_string(id->value) +
                             (id->fd.valid() ? ", with an fd)" : ")")});
  }
  self_ = static_cast<PeerId>(id->value);

  // Shared memory, the other peers' vectors, then ours. QEMU accepts these in any order; so do
  // we, as long as our own vectors come in one run (they are how the handshake ends).
  while (!(own_done_ && region_.valid())) {
    auto m = ivshmem::recv_msg(sock_.get(), left_ms(deadline));
    if (!m) {
      std::string state = "got " + std::to_string(own_pending_.size()) + " of " +
                          std::to_string(options_.vectors) + " own vectors" +
                          (region_.valid() ? "" : ", no shared memory yet");
      if (m.error().code == ETIMEDOUT && !own_pending_.empty()) {
        state += "; is the server's -n smaller than our vectors?";
      }
      return fail({m.error().code, who + ": handshake: " + m.error().message + " (" + state + ")"});
    }
    if (!own_pending_.empty() && m->value != self_) {
      return fail(
          {EPROTO, who + " sent only " + std::to_string(own_pending_.size()) +
                       " own vectors, this client needs " + std::to_string(options_.vectors) +
                       " (start the server with -n >= " + std::to_string(options_.vectors) + ")"});
    }
    auto e = apply(m->value, std::move(m->fd));
    if (!e) return fail({e.error().code, who + ": " + e.error().message});
  }
  return {};
}

Result<IvshmemClient::Event> IvshmemClient::apply(std::int64_t value, UniqueFd fd) {
  if (value < ivshmem::kShmMessage || value > ivshmem::kMaxPeerId) {
    return Error{EPROTO, "invalid message " + std::to_string(value)};
  }
  if (value == ivshmem::kShmMessage) {
    if (region_.valid()) return Error{EPROTO, "unexpected second shared memory message"};
    if (!fd.valid()) return Error{EPROTO, "shared memory message without an fd"};
    auto map = ShmMapping::map(fd.get());
    if (!map) return Error{map.error().code, "shared memory: " + map.error().message};
    region_ = std::move(*map);
    return Event::kNone;  // the mapping keeps the memory; the fd is not needed any more
  }
  const auto id = static_cast<PeerId>(value);
  if (!fd.valid()) {
    if (id == self_)
      return Error{EPROTO, "server announced our own id " + std::to_string(id) + " as departed"};
    auto it = peer_vecs_.find(id);
    if (it == peer_vecs_.end()) return Event::kNone;  // never announced to us: nothing to undo
    const bool was_complete = it->second == options_.vectors;
    peer_vecs_.erase(it);
    doorbells_.remove_peer(id);
    return was_complete ? Event::kLeft : Event::kNone;
  }
  if (id == self_) {
    if (own_done_) {
      ++extra_closed_;
      return Event::kNone;
    }
    own_pending_.push_back(std::move(fd));
    if (own_pending_.size() == options_.vectors) {
      doorbells_.set_own(self_, std::move(own_pending_));
      own_pending_.clear();
      own_done_ = true;
    }
    return Event::kNone;
  }
  unsigned& n = peer_vecs_[id];
  if (n >= options_.vectors) {
    ++extra_closed_;
    return Event::kNone;
  }
  doorbells_.add_peer_vector(id, std::move(fd));
  return ++n == options_.vectors ? Event::kJoined : Event::kNone;
}

Result<std::size_t> IvshmemClient::drain(const PeerCallback& joined_hook) {
  if (!sock_.valid()) return Error{ENOTCONN, "ivshmem: client not connected"};
  std::size_t handled = 0;
  while (handled < kMaxMessagesPerDrain) {
    auto m = ivshmem::try_recv_msg(sock_.get());
    if (!m) {
      if (m.error().code == ECONNRESET) {
        return fail({ECONNRESET, "ivshmem: server closed the connection (peer " +
                                     std::to_string(self_) + " is on its own now)"});
      }
      return fail(m.error());
    }
    if (!m->has_value()) break;
    ivshmem::Message& msg = **m;
    const auto id = static_cast<PeerId>(msg.value);
    auto e = apply(msg.value, std::move(msg.fd));
    if (!e) return fail({e.error().code, "ivshmem: " + e.error().message});
    ++handled;
    if (*e == Event::kJoined) {
      if (joined_hook) joined_hook(id);
      if (on_joined_) on_joined_(id);
    } else if (*e == Event::kLeft && on_left_) {
      on_left_(id);
    }
  }
  return handled;
}

Result<std::size_t> IvshmemClient::process_events() { return drain({}); }

Result<bool> IvshmemClient::wait_readable(std::int64_t deadline_ms) {
  for (;;) {
    pollfd p{sock_.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, left_ms(deadline_ms));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("ivshmem: poll");
    return n > 0;
  }
}

Result<PeerId> IvshmemClient::wait_for_peer(std::optional<PeerId> id, int timeout_ms) {
  const std::int64_t deadline = deadline_after(timeout_ms);
  for (;;) {
    if (id && complete(*id)) return *id;
    if (!sock_.valid()) return Error{ENOTCONN, "ivshmem: client not connected"};
    auto readable = wait_readable(deadline);
    if (!readable) return readable.error();
    if (!*readable) {
      return Error{ETIMEDOUT, "ivshmem: peer " + (id ? std::to_string(*id) : std::string("(any)")) +
                                  " did not join within " + std::to_string(timeout_ms) + " ms"};
    }
    std::optional<PeerId> joined;
    auto n = drain([&](PeerId p) {
      if (!joined && (!id || *id == p)) joined = p;
    });
    if (!n) return n.error();
    if (joined) return *joined;
  }
}

Status IvshmemClient::wait_for_peer_left(PeerId id, int timeout_ms) {
  const std::int64_t deadline = deadline_after(timeout_ms);
  while (peer_vecs_.count(id) != 0) {
    if (!sock_.valid()) return Error{ENOTCONN, "ivshmem: client not connected"};
    auto readable = wait_readable(deadline);
    if (!readable) return readable.error();
    if (!*readable) {
      return Error{ETIMEDOUT, "ivshmem: peer " + std::to_string(id) + " did not leave within " +
                                  std::to_string(timeout_ms) + " ms"};
    }
    if (auto n = drain({}); !n) return n.error();
  }
  return {};
}

}  // namespace tosec::rpc
