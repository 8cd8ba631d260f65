// Request validation: every descriptor copied out of a lane's request ring passes here before
// the TOE acts on it.
//
// Layers (a failure at any layer is a *bad descriptor*: -EINVAL completion, counter, the TOE
// goes on):
//  1. rpc::validate_request: known op, known flags, reserved fields zero, socket id in range,
//     buffer reference inside its pool (kKick, which the generic check does not know, gets the
//     same field checks here);
//  2. ownership: the socket id is allocated in *this guest's* table; a tx chunk lies in this
//     lane's slice of pool.tx and is not already held by the TOE (ChunkLedger: no chunk twice);
//     an rx chunk returned with kBufferReturn is one the TOE lent and the guest still holds;
//  3. per-op argument shape (kSocket's domain/type, address lengths, kKick's argument).
// Whether the socket's *state* allows the op is answered later with the errno the socket API
// would give (EISCONN, EOPNOTSUPP, ...): that is the application's mistake, not the guest's.
#pragma once

#include <cstdint>

#include "tosec/rpc/buffer_pool.h"
#include "tosec/rpc/descriptor.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/status.h"
#include "tosec/tovm/socket_table.h"

namespace tosec::tovm {

struct LaneContext {
  std::uint32_t lane = 0;
  std::uint32_t tx_first = 0;  // this lane's tx chunks: [tx_first, tx_first + tx_count)
  std::uint32_t tx_count = 0;
  const rpc::ChunkLedger* tx_held = nullptr;  // tx chunks the TOE holds now (whole pool)
};

struct ValidationContext {
  rpc::ChannelLimits limits;
  const SocketTable* sockets = nullptr;
  const rpc::ChunkAllocator* rx = nullptr;  // to check kBufferReturn without mutating
  LaneContext lane;
};

// True for ops whose descriptor names a socket that must be allocated.
bool op_needs_socket(std::uint16_t op);

// Layers 1-3 above. The error names the field and value.
rpc::Status validate_guest_request(const rpc::Descriptor& d, const ValidationContext& ctx);

}  // namespace tosec::tovm
