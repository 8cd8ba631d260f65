#include "tosec/tovm/request_handler.h"

#include <sys/socket.h>

#include <string>

namespace tosec::tovm {

namespace {
rpc::Error bad(const char* field, std::uint64_t value, const char* why) {
  return rpc::Error{EINVAL,
                    std::string("descriptor: ") + field + " " + std::to_string(value) + " " + why};
}
constexpr auto op_u16(rpc::Op op) { return static_cast<std::uint16_t>(op); }
}  // namespace

bool op_needs_socket(std::uint16_t op) {
  return op != op_u16(rpc::Op::kSocket) && op != op_u16(rpc::Op::kBufferReturn) &&
         op != op_u16(rpc::Op::kNop);
}

rpc::Status validate_guest_request(const rpc::Descriptor& d, const ValidationContext& ctx) {
  // 1. generic field checks
  if (d.op == rpc::kOpKick) {
    if ((d.flags & ~rpc::kDescKnownFlags) != 0) return bad("flags", d.flags, "has unknown bits");
    if (d.reserved0 != 0 || d.reserved1 != 0) return bad("reserved field", 0, "is not zero");
    if (d.pool != 0) return bad("pool", d.pool, "set on an op without a buffer");
    if (d.socket >= ctx.limits.max_socket) return bad("socket", d.socket, "is out of range");
    if (d.arg0 != 1 && d.arg0 != 2) return bad("kick arg0", d.arg0, "is not 1 or 2");
  } else if (auto s = rpc::validate_request(d, ctx.limits); !s) {
    return s;
  }
  if (d.op == op_u16(rpc::Op::kNop)) return {};
  // 2. ownership
  if (op_needs_socket(d.op) && ctx.sockets->find(d.socket) == nullptr) {
    return bad("socket", d.socket, "is not an open socket of this guest");
  }
  if (d.pool == static_cast<std::uint16_t>(rpc::PoolId::kTx)) {
    if (d.chunk < ctx.lane.tx_first || d.chunk - ctx.lane.tx_first >= ctx.lane.tx_count) {
      return bad("chunk", d.chunk, "is not in this lane's tx slice");
    }
    if (ctx.lane.tx_held != nullptr && ctx.lane.tx_held->holds(d.chunk)) {
      return bad("chunk", d.chunk, "is already held by the TOE (handed over twice)");
    }
  }
  if (d.op == op_u16(rpc::Op::kBufferReturn)) {
    if (d.pool != static_cast<std::uint16_t>(rpc::PoolId::kRx)) {
      return bad("pool", d.pool, "kBufferReturn returns rx chunks");
    }
    if (d.arg0 > UINT32_MAX) return bad("kBufferReturn generation", d.arg0, "has high bits set");
    (void)ctx.rx;  // the loan (socket, generation, lent-ness) is checked when it is handled
  }
  // 3. per-op shape
  switch (static_cast<rpc::Op>(d.op)) {
    case rpc::Op::kSocket: {
      const auto domain = static_cast<int>(d.arg0 & 0xFFFF);
      const auto type = static_cast<int>((d.arg0 >> 16) & 0xFFFF);
      if (d.arg0 >> 32 != 0) return bad("socket arg0", d.arg0, "has high bits set");
      if (domain != AF_INET && domain != AF_INET6) {
        return rpc::Error{EAFNOSUPPORT, "descriptor: domain " + std::to_string(domain)};
      }
      if (type != SOCK_STREAM && type != SOCK_DGRAM) {
        return rpc::Error{ESOCKTNOSUPPORT, "descriptor: type " + std::to_string(type)};
      }
      break;
    }
    case rpc::Op::kBind:
    case rpc::Op::kConnect:
      if (d.length < sizeof(sa_family_t) || d.length > sizeof(sockaddr_storage)) {
        return bad("address length", d.length, "is not a sockaddr length");
      }
      break;
    case rpc::Op::kSend:
      if (d.arg1 > d.length || d.arg1 > sizeof(sockaddr_storage)) {
        return bad("sendto address length", d.arg1, "exceeds the buffer or a sockaddr");
      }
      break;
    case rpc::Op::kShutdown:
      if (d.arg0 > SHUT_RDWR) return bad("shutdown how", d.arg0, "is not SHUT_RD/WR/RDWR");
      break;
    default:
      break;
  }
  return {};
}

}  // namespace tosec::tovm
