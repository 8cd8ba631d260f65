// Placeholders: who holds end B of each guest placeholder, and how the TOE's readiness mirror
// reaches it (decision 0004, decision 0008).
//
// Process mode: the guest process passed B by SCM_RIGHTS; the TOE holds it (LocalPlaceholders:
// rpc::PlaceholderEnd per socket, EOF on B in the TOE's epoll = the guest's last close of A,
// sock_diag watch after a kill). VM mode: no fd leaves the VM; the in-guest agent holds every B
// and each operation becomes a TOE -> agent descriptor on the agent lane (AgentPlaceholders;
// rpc/agent_lane.h), and the last close of A comes back as kAgentHangup.
//
// The session keeps the socket's state and the slot's guest flags (rx_signalled, tx_blocked);
// these classes only act on B. Every operation on a socket without a B is a no-op.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "tosec/rpc/descriptor.h"
#include "tosec/rpc/placeholder_end.h"
#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"
#include "tosec/tovm/placeholder_watch.h"

namespace tosec::tovm {

// Where a socket's B came from: the kSocket/kAccept request on a lane.
struct PlaceholderOrigin {
  std::uint32_t lane = 0;
  std::uint64_t request_id = 0;
  std::uint32_t generation = 0;  // the TOE's socket generation
};

class Placeholders {
 public:
  virtual ~Placeholders() = default;
  // The new socket `id` takes its B (process mode: `b` from the sidecar; VM mode: `b` is
  // invalid and the agent is told which request's B it is).
  virtual rpc::Status attach(std::uint32_t id, const PlaceholderOrigin& origin,
                             rpc::UniqueFd b) = 0;
  virtual bool attached(std::uint32_t id) const = 0;
  // One readiness byte into B (A readable).
  virtual void signal(std::uint32_t id) = 0;
  // The peer's FIN: shutdown(B, SHUT_WR).
  virtual void shut_write(std::uint32_t id) = 0;
  // A writable: drain B's junk, keeping the sentinel.
  virtual void drain(std::uint32_t id) = 0;
  // A dead connection: true if B can be closed over its sentinel with the last close of A still
  // observable afterwards (then kill() follows); false leaves B as it is.
  virtual bool prepare_kill(std::uint32_t id) = 0;
  // Closes B over its sentinel (A: ECONNRESET, POLLERR|POLLHUP); the socket is now a zombie.
  virtual void kill(std::uint32_t id) = 0;
  // Zombies: whether their A is still open. Local polls sock_diag; the agent reports the last
  // close as kAgentHangup instead, so polls() is false there and alive() always true.
  virtual bool polls_zombies() const = 0;
  virtual rpc::Result<bool> alive(std::uint32_t id) = 0;
  // Closes B and forgets it (the socket is being freed). Idempotent.
  virtual void release(std::uint32_t id) = 0;
};

// Process mode: B in the TOE.
class LocalPlaceholders final : public Placeholders {
 public:
  // `token_of(id)` is the epoll token under which B's hang-up reaches the session (which then
  // calls on_hangup); `log` receives the one-time sock_diag failure.
  LocalPlaceholders(std::uint32_t max_sockets, int epoll_fd,
                    std::function<std::uint64_t(std::uint32_t)> token_of,
                    std::function<void(const std::string&)> log);

  rpc::Status attach(std::uint32_t id, const PlaceholderOrigin& origin, rpc::UniqueFd b) override;
  bool attached(std::uint32_t id) const override { return ends_[id].valid(); }
  void signal(std::uint32_t id) override { ends_[id].signal(); }
  void shut_write(std::uint32_t id) override { ends_[id].shut_write(); }
  void drain(std::uint32_t id) override { ends_[id].drain_keep_sentinel(scratch_); }
  bool prepare_kill(std::uint32_t id) override;
  void kill(std::uint32_t id) override;
  bool polls_zombies() const override { return true; }
  rpc::Result<bool> alive(std::uint32_t id) override { return watch_.alive(a_[id]); }
  void release(std::uint32_t id) override;
  // EOF/error on B (the epoll event of token_of(id)): stops watching B. True if this was B's
  // hang-up, i.e. the guest's last close of A.
  bool on_hangup(std::uint32_t id, std::uint32_t events);

 private:
  void unwatch(std::uint32_t id);
  std::vector<rpc::PlaceholderEnd> ends_;
  std::vector<UnixSocketRef> a_;       // end A of killed sockets (sock_diag)
  std::vector<std::uint8_t> watched_;  // B is in the epoll set
  std::vector<std::byte> scratch_;
  int epoll_fd_;
  std::function<std::uint64_t(std::uint32_t)> token_of_;
  std::function<void(const std::string&)> log_;
  PlaceholderWatch watch_;
  bool watch_failed_logged_ = false;
};

// VM mode: B in the in-guest agent; every operation is one descriptor to `emit` (which queues
// it on the agent lane's completion ring and rings the agent).
class AgentPlaceholders final : public Placeholders {
 public:
  AgentPlaceholders(std::uint32_t max_sockets, std::function<void(const rpc::Descriptor&)> emit);

  rpc::Status attach(std::uint32_t id, const PlaceholderOrigin& origin, rpc::UniqueFd b) override;
  bool attached(std::uint32_t id) const override { return sockets_[id].bound; }
  void signal(std::uint32_t id) override;
  void shut_write(std::uint32_t id) override;
  void drain(std::uint32_t id) override;
  bool prepare_kill(std::uint32_t id) override { return sockets_[id].bound; }
  void kill(std::uint32_t id) override;
  bool polls_zombies() const override { return false; }
  rpc::Result<bool> alive(std::uint32_t) override { return true; }
  void release(std::uint32_t id) override;
  // A kAgentHangup for (id, generation) names a socket whose B the agent holds (or held
  // until a kill): false for stale generations and unknown sockets.
  bool matches(std::uint32_t id, std::uint64_t generation) const;
  // The agent is gone (closed, restarted): every B it held is gone with it; no descriptors.
  void forget_all();

  // Encoding of one TOE -> agent descriptor (rpc/agent_lane.h), exposed for the unit tests.
  static rpc::Descriptor message(std::uint16_t op, std::uint32_t id, std::uint32_t generation);

 private:
  struct Held {
    bool bound = false;   // the agent holds B (until kill/release)
    bool killed = false;  // B closed over its sentinel: a hangup still comes
    std::uint32_t generation = 0;
  };
  void send(std::uint16_t op, std::uint32_t id);
  std::vector<Held> sockets_;
  std::function<void(const rpc::Descriptor&)> emit_;
};

}  // namespace tosec::tovm
