// Fuzzes hot-path descriptor validation: any 64 bytes a guest can put in a request slot.
// Invariant: validate_request either rejects the descriptor, or every byte it references lies
// inside the named pool (checked() agrees and the span is in bounds: ASan checks the memset).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "tosec/rpc/descriptor.h"

using namespace tosec::rpc;

namespace {
struct Pools {
  Pools() {
    tx_mem = static_cast<std::byte*>(std::aligned_alloc(4096, 8 * 2048));
    rx_mem = static_cast<std::byte*>(std::aligned_alloc(4096, 4 * 4096));
    tx = std::move(*BufferPool::attach({tx_mem, 8 * 2048}, 8, 2048, "tx"));
    rx = std::move(*BufferPool::attach({rx_mem, 4 * 4096}, 4, 4096, "rx"));
  }
  std::byte* tx_mem;
  std::byte* rx_mem;
  BufferPool tx, rx;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Pools pools;
  Descriptor d{};
  std::memcpy(&d, data, size < sizeof d ? size : sizeof d);
  const ChannelLimits limits{64, &pools.tx, &pools.rx};
  if (!validate_request(d, limits).ok()) return 0;
  if (!op_carries_buffer(static_cast<Op>(d.op))) return 0;
  const BufferPool& pool = d.pool == static_cast<std::uint16_t>(PoolId::kTx) ? pools.tx : pools.rx;
  auto bytes = pool.checked({d.chunk, d.offset, d.length});
  if (!bytes.ok()) std::abort();  // the two checks disagree
  std::memset(bytes->data(), 0x5A, bytes->size());
  return 0;
}
