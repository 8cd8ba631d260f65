// Helpers shared by the control ring and channel tests: a 64-byte aligned area standing in for
// a slice of a shared-memory region, and raw access to its header and data bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>

#include "tosec/rpc/control_ring.h"

namespace tosec::rpc::test {

class TestArea {
 public:
  explicit TestArea(std::uint32_t capacity)
      : size_(ControlRing::area_size(capacity)),
        bytes_(new (std::align_val_t{64}) std::byte[size_]) {
    std::memset(bytes_.get(), 0, size_);
  }

  std::span<std::byte> span() { return {bytes_.get(), size_}; }
  ControlRingHeader& header() { return *reinterpret_cast<ControlRingHeader*>(bytes_.get()); }
  std::byte* data() { return bytes_.get() + kControlRingHeaderSize; }

  // Writes raw bytes at ring index `index` (wrapping), as a misbehaving peer would.
  void poke(std::uint64_t index, const void* src, std::size_t n) {
    const std::uint32_t cap = header().capacity;
    for (std::size_t i = 0; i < n; ++i) {
      data()[(index + i) & (cap - 1)] = static_cast<const std::byte*>(src)[i];
    }
  }

 private:
  struct AlignedDelete {
    void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::size_t size_;
  std::unique_ptr<std::byte[], AlignedDelete> bytes_;
};

}  // namespace tosec::rpc::test
