// Fuzzes the control-ring reader against a hostile writer: the input becomes the ring's data
// bytes and its producer index. Invariant: read() never crashes, never returns a frame larger
// than the ring, and the loop ends (each read consumes bytes, reports empty, or breaks the ring).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "tosec/rpc/control_ring.h"

using namespace tosec::rpc;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::uint32_t kCap = 1024;
  alignas(64) static std::byte area[kControlRingHeaderSize + kCap];
  if (!ControlRing::format(area, kCap).ok()) std::abort();
  auto ring = ControlRing::attach(area, "fuzz");
  if (!ring.ok()) std::abort();
  if (size < 8) return 0;
  // First 8 bytes: the producer index a hostile peer publishes; the rest: the ring's bytes.
  std::uint64_t producer = 0;
  std::memcpy(&producer, data, 8);
  std::memcpy(area + kControlRingHeaderSize, data + 8, std::min<std::size_t>(size - 8, kCap));
  auto* hdr = reinterpret_cast<ControlRingHeader*>(area);
  hdr->producer.store(producer, std::memory_order_release);
  for (int i = 0; i < 4 * static_cast<int>(kCap); ++i) {
    auto f = ring->read();
    if (f.ok()) {
      if (f->payload.size() > kCap) std::abort();
      continue;
    }
    if (f.error().code == EAGAIN || f.error().code == EPROTO) break;
  }
  return 0;
}
