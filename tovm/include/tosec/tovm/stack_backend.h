// StackBackend: the TCP/IP stack the TOE drives on behalf of guests.
//
// The TOE (guest sessions, request handler, socket table) never calls a socket API directly: it
// opens, connects, sends and receives through this interface, and learns about readiness from
// poll(). The `kernel` backend (kernel_backend.h) maps it onto non-blocking Linux sockets and an
// epoll set; a user-space stack (lwIP on DPDK) implements the same calls over its own PCBs.
//
// Contract:
//  - Every call is non-blocking and returns Status/Result with an errno code (EAGAIN,
//    EINPROGRESS, ECONNRESET, ...) exactly as the socket API would, so the TOE can hand it to
//    the guest unchanged.
//  - Readiness is level-triggered and interest-based: the TOE says what it wants (set_interest)
//    and poll() reports handles that are ready for it, tagged with the caller's token. A handle
//    with no read interest is not read: that is how the TOE applies TCP backpressure.
//  - event_fd() is readable whenever poll() may have something, so a worker can sleep on it
//    together with its other fds. A backend without an fd (a polled NIC) returns -1 and the
//    worker must call poll() every iteration.
//  - Threading: one backend instance belongs to one worker thread.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "tosec/rpc/status.h"

namespace tosec::tovm {

using BackendHandle = std::int32_t;  // >= 0; meaning is backend-private
inline constexpr BackendHandle kNoHandle = -1;

// A socket address (sockaddr_in / sockaddr_in6 / anything up to sockaddr_storage).
struct SockAddr {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
};

struct Interest {
  bool read = false;
  bool write = false;
  // Without read/write interest: still report the next error (a reset after the peer's FIN,
  // when reading stopped because EOF is level-triggered), once.
  bool error = false;
};

struct BackendEvent {
  std::uint64_t token = 0;
  bool readable = false;  // data, EOF, an incoming connection, or an error to read
  // Room to send, or a connect that finished (either way). A backend reports a connect that
  // failed with error or hangup as well: writable alone means connected (the TOE reads no
  // SO_ERROR then).
  bool writable = false;
  bool error = false;   // an error is pending (read it with take_error)
  bool hangup = false;  // both directions are closed
};

class StackBackend {
 public:
  virtual ~StackBackend() = default;
  virtual const char* name() const = 0;

  // ---- lifecycle ----
  virtual rpc::Result<BackendHandle> open(int domain, int type, int protocol) = 0;
  // abort = true: reset the connection (SO_LINGER 0) instead of a graceful close.
  virtual void close(BackendHandle h, bool abort) = 0;

  // ---- control ----
  virtual rpc::Status bind(BackendHandle h, const SockAddr& addr) = 0;
  virtual rpc::Status listen(BackendHandle h, int backlog) = 0;
  // EAGAIN when none is pending. The new handle is non-blocking, no interest set.
  virtual rpc::Result<BackendHandle> accept(BackendHandle h, SockAddr& peer) = 0;
  // EINPROGRESS when the connection completes later: a writable event, with error or hangup
  // (then take_error() names it) when it failed.
  virtual rpc::Status connect(BackendHandle h, const SockAddr& addr) = 0;
  virtual rpc::Status shutdown(BackendHandle h, int how) = 0;
  virtual rpc::Status setsockopt(BackendHandle h, int level, int name,
                                 std::span<const std::byte> value) = 0;
  // Returns the value's length (the value is truncated to `out`).
  virtual rpc::Result<std::size_t> getsockopt(BackendHandle h, int level, int name,
                                              std::span<std::byte> out) = 0;
  virtual rpc::Result<SockAddr> local_address(BackendHandle h) = 0;
  virtual rpc::Result<SockAddr> peer_address(BackendHandle h) = 0;
  // The pending error (SO_ERROR), 0 if none; clears it.
  virtual int take_error(BackendHandle h) = 0;

  // ---- data ----
  // Bytes accepted (maybe fewer than offered), or EAGAIN / an errno.
  virtual rpc::Result<std::size_t> send(BackendHandle h, std::span<const std::byte> data, int flags,
                                        const SockAddr* to) = 0;
  // Bytes received, 0 = EOF (stream), or EAGAIN / an errno. `from` (may be null) gets the
  // source of a datagram.
  virtual rpc::Result<std::size_t> recv(BackendHandle h, std::span<std::byte> out,
                                        SockAddr* from) = 0;

  // True if received bytes wait in the stack, not yet taken by recv (close with unread data
  // is an abort, as on Linux). Stacks that cannot tell answer false.
  virtual bool has_unread(BackendHandle /*h*/) { return false; }

  // ---- readiness ----
  virtual rpc::Status set_interest(BackendHandle h, std::uint64_t token, Interest interest) = 0;
  virtual int event_fd() const = 0;
  // Ready handles, without blocking; returns how many events were written.
  virtual std::size_t poll(std::span<BackendEvent> out) = 0;
};

}  // namespace tosec::tovm
