// Geometry of a control (byte) ring area, known to the region layout without pulling in the
// control ring itself. The ring's shared header must fit kControlRingHeaderSize bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "tosec/rpc/status.h"

namespace tosec::rpc {

inline constexpr std::size_t kControlRingHeaderSize = 256;

// Formats an empty control ring of `capacity` bytes (power of two) in `area`
// (kControlRingHeaderSize + capacity bytes). Implemented by control_ring.cpp.
Status format_control_ring(std::span<std::byte> area, std::uint32_t capacity);

}  // namespace tosec::rpc
