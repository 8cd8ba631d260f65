// Fuzzes what an untrusted peer controls in a region: the header (area table, sizes, state) and
// the ring indices. The input is XORed onto a valid formatted region, so an empty input is a
// valid region and the fuzzer explores near-valid headers, where validation bugs hide.
// Invariant: attach either fails cleanly, or every area it accepts lies inside the region and
// the ring/pool views built on it never touch bytes outside their area (ASan checks).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "tosec/rpc/buffer_pool.h"
#include "tosec/rpc/region.h"
#include "tosec/rpc/spsc_ring.h"

using namespace tosec::rpc;

namespace {
constexpr std::size_t kRegionSize = 1 << 16;

struct Template {
  Template() {
    RegionLayout l;
    l.add_ring("req", 16, 64)
        .add_ring("cpl", 16, 64)
        .add_byte_ring("ctl", 1024)
        .add_pool("tx", 4, 2048)
        .add_pool("rx", 4, 2048);
    bytes = static_cast<std::byte*>(std::aligned_alloc(4096, kRegionSize));
    std::memset(bytes, 0, kRegionSize);
    if (!l.format({bytes, kRegionSize}).ok()) std::abort();
  }
  std::byte* bytes;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Template tmpl;
  static std::byte* region = static_cast<std::byte*>(std::aligned_alloc(4096, kRegionSize));
  std::memcpy(region, tmpl.bytes, kRegionSize);
  // The first 4 KiB of input perturb the header; anything after that perturbs ring headers.
  for (std::size_t i = 0; i < size && i < kRegionSize; ++i) {
    region[i] ^= static_cast<std::byte>(data[i]);
  }
  auto view = RegionView::attach({region, kRegionSize});
  if (!view.ok()) return 0;
  for (const auto& a : view->areas()) {
    if (a.offset + a.size > kRegionSize) std::abort();  // attach let a bad area through
    const std::string name = area_name(a);
    if (a.kind == AreaKind::kRing) {
      auto c = SpscRing::attach(*view, name, RingEnd::kConsumer);
      if (c.ok()) {
        std::byte out[64 * 16 * 2];
        const std::uint32_t n = c->available();
        if (n > c->capacity()) std::abort();
        if (c->slot_size() * 16ULL <= sizeof out) (void)c->dequeue_burst(out, 16);
      }
      auto p = SpscRing::attach(*view, name, RingEnd::kProducer);
      if (p.ok() && p->slot_size() <= 4096) {
        static std::byte zeros[4096 * 4];
        if (p->slot_size() * 4ULL <= sizeof zeros) (void)p->enqueue_burst(zeros, 4);
      }
    } else if (a.kind == AreaKind::kPool) {
      auto pool = BufferPool::attach(*view, name);
      if (pool.ok()) {
        auto last = pool->chunk(pool->chunk_count() - 1);
        std::memset(last.data(), 0xAB, last.size());  // ASan flags any overrun
      }
    }
  }
  return 0;
}
