// Hot-path RPC descriptors: fixed-layout, little-endian, one cache line each.
//
// Requests flow guest -> TOE in the request ring, completions and events TOE -> guest in the
// completion ring. No allocation, no serialisation library, no locks: a descriptor is copied
// into a ring slot as is. Payload bytes never travel in a descriptor, only a BufferRef into one
// of the guest region's pools.
//
//   0        2        4                8                16
//   +--------+--------+----------------+----------------+
//   | op     | flags  | socket         | request id     |
//   +--------+--------+--------+-------+----------------+
//   | pool   | resvd  | chunk          | offset         |    16..31
//   +--------+--------+----------------+----------------+
//   | length          | resvd          | result (int64) |    32..47
//   +-----------------+----------------+----------------+
//   | arg0 (u64)                       | arg1 (u64)     |    48..63
//   +----------------------------------+----------------+
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "tosec/rpc/buffer_pool.h"
#include "tosec/rpc/status.h"

namespace tosec::rpc {

enum class Op : std::uint16_t {
  kNop = 0,
  kSocket = 1,
  kBind = 2,
  kListen = 3,
  kAccept = 4,
  kConnect = 5,
  kSend = 6,  // buffer: tx pool bytes to send
  kRecv = 7,  // completion carries an rx pool buffer
  kShutdown = 8,
  kClose = 9,
  kSetsockopt = 10,  // buffer: option value
  kGetsockopt = 11,
  kGetname = 12,       // getsockname / getpeername
  kBufferReturn = 13,  // guest gives rx chunks back
  kEvent = 14,         // TOE -> guest readiness/error event
  kOpCount
};

enum class PoolId : std::uint16_t { kNone = 0, kTx = 1, kRx = 2 };

inline constexpr std::uint16_t kDescFlagMore = 1U << 0;      // more descriptors of one request
inline constexpr std::uint16_t kDescFlagNonblock = 1U << 1;  // MSG_DONTWAIT semantics
inline constexpr std::uint16_t kDescFlagPeek = 1U << 2;      // MSG_PEEK
inline constexpr std::uint16_t kDescFlagOob = 1U << 3;       // reserved for MSG_OOB
// The guest does not wait for this request: the TOE sends no completion. Only on a kSetsockopt
// whose value is inline (guest_channel.h); the guest posts only options that cannot fail.
inline constexpr std::uint16_t kDescFlagNoReply = 1U << 4;
inline constexpr std::uint16_t kDescKnownFlags = 0x001F;
// Largest option value a kSetsockopt carries inline in arg1 (pool kNone) instead of a chunk.
inline constexpr std::uint32_t kInlineOptionMax = 8;

struct Descriptor {
  std::uint16_t op;
  std::uint16_t flags;
  std::uint32_t socket;
  std::uint64_t request_id;
  std::uint16_t pool;
  std::uint16_t reserved0;
  std::uint32_t chunk;
  std::uint32_t offset;
  std::uint32_t length;
  std::uint32_t reserved1;
  std::int64_t result;  // >= 0 value, < 0 -errno (completions)
  std::uint64_t arg0;
  std::uint64_t arg1;
};
static_assert(sizeof(Descriptor) == 64);
static_assert(std::is_trivially_copyable_v<Descriptor>);

bool op_carries_buffer(Op op);

// Limits the TOE knows privately for one guest channel.
struct ChannelLimits {
  std::uint32_t max_socket;        // socket ids are < max_socket
  const BufferPool* tx = nullptr;  // guest's send pool
  const BufferPool* rx = nullptr;  // guest's receive pool
};

// Validates a request descriptor *copied out of* shared memory: known op, known flags, socket in
// range, reserved fields zero, and for ops that carry a buffer a pool reference that lies inside
// that pool. The error names the field and its value. Never touches the pools' bytes.
Status validate_request(const Descriptor& d, const ChannelLimits& limits);

}  // namespace tosec::rpc
