// Control ring: a single-producer/single-consumer byte ring of variable-length framed messages,
// laid out inside a shared-memory area. It carries the low-volume control plane (protobuf
// ControlMessages, see control_channel.h); the hot path uses fixed-slot rings instead.
//
// Area layout (offsets from the start of the area, which must be 64-byte aligned):
//
//   0    ControlRingHeader (256 bytes): magic, version, capacity | producer | consumer | reserved
//   256  data: `capacity` bytes (a power of two), used as a circular buffer
//
// Indices are free-running 64-bit byte counts; position in the data = index & (capacity - 1).
// A frame is a 16-byte ControlFrameHeader {magic, type, length, crc32c(payload)}, the payload,
// then zero padding to the next multiple of 8. Frames may wrap around the end of the data.
//
// Trust: the peer may be an untrusted guest. attach() validates the header once and keeps a
// private copy of the geometry. Each side keeps its own index privately and only *reads* the
// peer's index from shared memory, validating it every time. Frames are copied out to private
// memory before they are checked, so a peer scribbling concurrently cannot change what was
// validated. A bad frame costs one EBADMSG and a resync, never the ring; an impossible index
// breaks the ring for good (sticky EPROTO), because the peer is then not speaking the protocol.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/control_ring_geometry.h"
#include "tosec/rpc/status.h"

namespace tosec::rpc {

inline constexpr std::uint32_t kControlRingMagic = 0x31'52'43'54;  // "TCR1" little-endian
inline constexpr std::uint32_t kControlRingVersion = 1;
inline constexpr std::uint32_t kControlFrameMagic = 0x4D'46'43'54;  // "TCFM" little-endian
inline constexpr std::uint32_t kControlRingMinCapacity = 64;
inline constexpr std::uint32_t kControlRingMaxCapacity = 1U << 30;
inline constexpr std::size_t kControlFrameAlign = 8;

// Shared header of a control ring. Producer and consumer indices each own a cache line so the
// two sides do not false-share.
struct ControlRingHeader {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint32_t capacity;  // data bytes, power of two in [kControlRingMinCapacity, Max]
  std::uint32_t reserved0;
  std::uint8_t pad0[48];
  alignas(64) std::atomic<std::uint64_t> producer;  // written only by the producer
  std::uint8_t pad1[56];
  alignas(64) std::atomic<std::uint64_t> consumer;  // written only by the consumer
  std::uint8_t pad2[56];
  std::uint8_t reserved[64];  // for notification flags ("consumer sleeping") later
};
static_assert(sizeof(ControlRingHeader) == kControlRingHeaderSize);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// Wire header of one frame, little-endian like every other shared layout.
struct ControlFrameHeader {
  std::uint32_t magic;
  std::uint32_t type;    // application-defined (ControlChannel uses kControlMessageFrame)
  std::uint32_t length;  // payload bytes, excluding header and padding
  std::uint32_t crc;     // CRC-32C of the payload
};
inline constexpr std::size_t kControlFrameHeaderSize = sizeof(ControlFrameHeader);
static_assert(kControlFrameHeaderSize == 16);

class ControlRing {
 public:
  struct Frame {
    std::uint32_t type = 0;
    std::vector<std::byte> payload;  // private copy, already validated
  };

  // Bytes an area needs for a ring of `capacity` data bytes.
  static constexpr std::size_t area_size(std::uint32_t capacity) {
    return kControlRingHeaderSize + capacity;
  }
  // Ring bytes one frame with `payload` bytes occupies (header + payload + padding).
  static constexpr std::uint64_t frame_size(std::uint64_t payload) {
    return kControlFrameHeaderSize + ((payload + kControlFrameAlign - 1) & ~std::uint64_t{7});
  }
  // CRC-32C (Castagnoli), as used in the frame header.
  static std::uint32_t checksum(std::span<const std::byte> bytes);

  // Writes an empty ring header into `area` (64-byte aligned, >= area_size(capacity) bytes).
  // Only the trusted side that owns the region formats it.
  static Status format(std::span<std::byte> area, std::uint32_t capacity);

  // Validates the header of a formatted ring and returns a view with a private geometry.
  // `name` appears in error messages ("control ring 'ctl.g2t': ...").
  static Result<ControlRing> attach(std::span<std::byte> area, std::string_view name = "control");

  // Appends one frame, all or nothing. EAGAIN: not enough room now (retry after the consumer
  // drains). EMSGSIZE: the payload can never fit this ring. EPROTO: ring broken.
  Status write(std::uint32_t type, std::span<const std::byte> payload);

  // Takes the next frame. EAGAIN: empty. EBADMSG: a garbage or truncated frame was skipped
  // (the message names what and where); the next read() continues after it. EPROTO: broken.
  Result<Frame> read();
  // As read(), reusing `out`'s buffer. `out` is unspecified after an error.
  Status read_into(Frame& out);

  std::uint32_t capacity() const { return capacity_; }
  // Largest payload a frame can carry: a single frame may fill the whole ring.
  std::size_t max_payload() const { return capacity_ - kControlFrameHeaderSize; }
  // Frames waiting, in bytes, as seen from shared memory right now (for stats; unvalidated).
  std::uint64_t backlog_bytes() const;
  bool broken() const { return broken_.has_value(); }
  const std::string& name() const { return name_; }
  // Resync counters, for stats.
  std::uint64_t bad_frames() const { return bad_frames_; }
  std::uint64_t skipped_bytes() const { return skipped_bytes_; }

 private:
  ControlRing() = default;

  void copy_out(std::uint64_t index, void* dst, std::size_t n) const;
  void copy_in(std::uint64_t index, const void* src, std::size_t n);
  // Checks that a complete, valid frame starts at `index`, copying it into `out`. On failure
  // returns false and, if `why` is set, describes the problem.
  bool probe(std::uint64_t index, std::uint64_t producer, Frame& out, std::string* why) const;
  Error break_ring(std::string what);

  ControlRingHeader* hdr_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint32_t capacity_ = 0;
  std::uint64_t mask_ = 0;
  std::uint64_t producer_ = 0;  // private copies: never re-read our own index from shared memory
  std::uint64_t consumer_ = 0;
  std::optional<Error> broken_;
  std::string name_;
  Frame scratch_;  // resync candidates are copied here, not into the caller's frame
  std::uint64_t bad_frames_ = 0;
  std::uint64_t skipped_bytes_ = 0;
};

}  // namespace tosec::rpc
