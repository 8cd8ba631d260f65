// End B of a guest placeholder: the operations of the readiness mirror.
//
// Every offloaded socket is end A of an AF_UNIX socketpair in the guest process; end B is held
// by whoever mirrors the socket's readiness onto it (decision 0004; guest_channel.h describes
// the protocol): the TOE itself in process mode, the in-guest agent in VM mode (decision 0008).
// This class is those operations on B, so both holders behave alike. It knows nothing of the
// socket slot: the rx_signalled/tx_blocked flags stay with the caller.
#pragma once

#include <cstddef>
#include <span>

#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::rpc {

class PlaceholderEnd {
 public:
  PlaceholderEnd() = default;

  // Takes B. Nothing below may block the holder's event loop, and nothing does whatever B's
  // O_NONBLOCK flag says: sends and receives pass MSG_DONTWAIT, shutdown and SIOCINQ never
  // wait, and closing a Unix socket never lingers. So no fcntl (a system call per socket).
  // The caller has checked that B is a Unix stream socket. Fails if `b` is not open.
  static Result<PlaceholderEnd> adopt(UniqueFd b);

  bool valid() const { return b_.valid(); }
  int fd() const { return b_.get(); }

  // One readiness byte: A becomes readable (and an EPOLLET waiter on A wakes once more).
  // EAGAIN on a full B is harmless: A is readable anyway.
  void signal() const;

  // The peer's FIN: A reports POLLIN|POLLRDHUP and reads 0 once the readiness bytes are gone.
  // Only B's send side is shut: B stays readable for the guest's junk (writability) and
  // reports a hang-up only when the last A is closed.
  void shut_write() const;

  // Makes A writable: drains the junk the guest wrote into A to block it, but leaves a
  // trailing sentinel byte (rpc::kPlaceholderSentinel) in B, so that closing B later sets
  // ECONNRESET on A (kill). `scratch` is the caller's buffer (no allocation here).
  void drain_keep_sentinel(std::span<std::byte> scratch) const;

  // Closes B. With a sentinel left in it, A then reports POLLERR|POLLHUP (ECONNRESET): how a
  // dead connection is mirrored.
  void reset() { b_.reset(); }

 private:
  explicit PlaceholderEnd(UniqueFd b) : b_(std::move(b)) {}
  UniqueFd b_;
  mutable bool write_shut_ = false;  // holder-private state, not the fd's: const API above
};

}  // namespace tosec::rpc
