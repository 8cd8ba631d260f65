#include "tosec/rpc/descriptor.h"

namespace tosec::rpc {

namespace {
Error bad(const char* field, std::uint64_t value, const char* why) {
  return Error{EINVAL,
               std::string("descriptor: ") + field + " " + std::to_string(value) + " " + why};
}
}  // namespace

bool op_carries_buffer(Op op) {
  return op == Op::kSend || op == Op::kSetsockopt || op == Op::kBufferReturn ||
         op == Op::kConnect || op == Op::kBind;
}

Status validate_request(const Descriptor& d, const ChannelLimits& limits) {
  if (d.op == 0 || d.op >= static_cast<std::uint16_t>(Op::kOpCount) ||
      d.op == static_cast<std::uint16_t>(Op::kEvent)) {
    return bad("op", d.op, "is not a request opcode");
  }
  if ((d.flags & ~kDescKnownFlags) != 0) return bad("flags", d.flags, "has unknown bits");
  if (d.reserved0 != 0 || d.reserved1 != 0) return bad("reserved field", 0, "is not zero");
  const auto op = static_cast<Op>(d.op);
  if (op != Op::kSocket && d.socket >= limits.max_socket) {
    return bad("socket", d.socket, "is out of range");
  }
  if ((d.flags & kDescFlagNoReply) != 0 && (op != Op::kSetsockopt || d.pool != 0)) {
    return bad("flags", d.flags, "ask for no reply on a request that is not an inline kSetsockopt");
  }
  if (op == Op::kSetsockopt && d.pool == 0) {  // the value is inline in arg1
    if (d.chunk != 0 || d.offset != 0) return bad("chunk", d.chunk, "set without a pool");
    if (d.length > kInlineOptionMax) return bad("inline option length", d.length, "exceeds 8");
    return {};
  }
  if (!op_carries_buffer(op)) {
    if (d.pool != 0) return bad("pool", d.pool, "set on an op without a buffer");
    return {};
  }
  const BufferPool* pool = nullptr;
  if (d.pool == static_cast<std::uint16_t>(PoolId::kTx)) pool = limits.tx;
  if (d.pool == static_cast<std::uint16_t>(PoolId::kRx) && op == Op::kBufferReturn)
    pool = limits.rx;
  if (pool == nullptr) return bad("pool", d.pool, "is not valid for this op");
  if (!pool->valid(BufferRef{d.chunk, d.offset, d.length})) {
    if (d.chunk >= pool->chunk_count()) return bad("chunk", d.chunk, "is out of range");
    return bad("offset+length", std::uint64_t{d.offset} + d.length, "exceeds the chunk");
  }
  return {};
}

}  // namespace tosec::rpc
