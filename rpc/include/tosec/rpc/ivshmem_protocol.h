// Wire format of QEMU's ivshmem client/server protocol (docs/ivshmem-protocol.md).
//
// The connection is one-way, server to client. Every message is one little-endian int64,
// optionally with exactly one file descriptor attached as SCM_RIGHTS. The meaning of a value
// depends on where it comes in the stream (version, own id, -1 = shared memory, peer id with fd =
// one vector of that peer, peer id without fd = that peer left); these helpers only move
// messages, the client and server give them meaning.
//
// Unix stream sockets may split the 8 bytes over several reads; the receive side reassembles
// them and never reads past the end of a message, so no state is kept between calls.
#pragma once

#include <cstdint>
#include <optional>

#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::rpc::ivshmem {

// The only protocol version QEMU (>= 2.5) speaks; older servers sent no version at all.
inline constexpr std::int64_t kProtocolVersion = 0;
// Value that accompanies the shared-memory fd.
inline constexpr std::int64_t kShmMessage = -1;
// Peer ids must fit the 16-bit peer field of the ivshmem Doorbell register.
inline constexpr std::int64_t kMaxPeerId = 0xFFFF;

struct Message {
  std::int64_t value = 0;
  UniqueFd fd;  // invalid if the message carried no fd
};

// Sends one message. `fd` < 0 sends none. Blocks (polling on EAGAIN) until all 8 bytes are
// sent or `timeout_ms` (-1 = forever) passes; EINTR is retried; never raises SIGPIPE.
Status send_msg(int sock, std::int64_t value, int fd = -1, int timeout_ms = -1);

// Non-blocking send for event loops: returns false (nothing sent) if the socket buffer is full,
// true once the whole message went out. A message is 8 bytes, so once its first byte is in the
// kernel the rest follows at once; the remainder is then sent with a short bounded wait.
Result<bool> try_send_msg(int sock, std::int64_t value, int fd = -1);

// Receives one message, waiting up to `timeout_ms` (-1 = forever) for it to be complete.
// Errors: ECONNRESET when the peer closed the connection before the first byte; EPROTO for a
// short message (EOF mid-message), more than one fd, a control message other than SCM_RIGHTS,
// or a truncated control message (every fd received with a bad message is closed);
// ETIMEDOUT when the timeout passes.
Result<Message> recv_msg(int sock, int timeout_ms = -1);

// Like recv_msg, but returns std::nullopt at once if no byte of a message is available yet.
// Once a message has started, its remainder is awaited for at most `rest_timeout_ms`.
Result<std::optional<Message>> try_recv_msg(int sock, int rest_timeout_ms = 1000);

}  // namespace tosec::rpc::ivshmem
