#include "tosec/rpc/control_ring.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <cstring>
#include <new>
#include <utility>

namespace tosec::rpc {

static_assert(std::endian::native == std::endian::little,
              "shared layouts are little-endian; a big-endian port needs byte swaps here");

namespace {

constexpr std::uint64_t kAlignMask = kControlFrameAlign - 1;

constexpr std::array<std::uint32_t, 256> make_crc32c_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) != 0 ? (c >> 1) ^ 0x82F6'3B78U : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrc32cTable = make_crc32c_table();

std::string hex(std::uint64_t v) {
  char buf[24] = "0x";
  auto [end, ec] = std::to_chars(buf + 2, buf + sizeof buf, v, 16);
  (void)ec;  // 16 hex digits always fit
  return std::string(buf, end);
}

std::string dec(std::uint64_t v) { return std::to_string(v); }

Status check_capacity(const std::string& who, std::uint32_t capacity) {
  if (!std::has_single_bit(capacity) || capacity < kControlRingMinCapacity ||
      capacity > kControlRingMaxCapacity) {
    return Error{EINVAL, who + ": capacity " + dec(capacity) + " is not a power of two in [" +
                             dec(kControlRingMinCapacity) + ", 2^30]"};
  }
  return {};
}

Status check_area(const std::string& who, std::span<std::byte> area, std::uint32_t capacity) {
  if (reinterpret_cast<std::uintptr_t>(area.data()) % alignof(ControlRingHeader) != 0) {
    return Error{EINVAL, who + ": area is not 64-byte aligned"};
  }
  if (area.size() < ControlRing::area_size(capacity)) {
    return Error{EINVAL, who + ": area of " + dec(area.size()) + " bytes is too small for " +
                             dec(capacity) + " data bytes plus the " + dec(kControlRingHeaderSize) +
                             "-byte header"};
  }
  return {};
}

}  // namespace

Status format_control_ring(std::span<std::byte> area, std::uint32_t capacity) {
  return ControlRing::format(area, capacity);
}

std::uint32_t ControlRing::checksum(std::span<const std::byte> bytes) {
  std::uint32_t c = 0xFFFF'FFFFU;
  for (std::byte b : bytes) {
    c = kCrc32cTable[(c ^ std::to_integer<std::uint32_t>(b)) & 0xFFU] ^ (c >> 8);
  }
  return ~c;
}

Status ControlRing::format(std::span<std::byte> area, std::uint32_t capacity) {
  const std::string who = "control ring";
  if (Status s = check_capacity(who, capacity); !s) return s;
  if (Status s = check_area(who, area, capacity); !s) return s;
  // Zero the data too: stale bytes from an earlier life of the region must not look like frames
  // to a consumer that resyncs over them.
  std::memset(area.data(), 0, area_size(capacity));
  auto* h = new (area.data()) ControlRingHeader{};
  h->version = kControlRingVersion;
  h->capacity = capacity;
  h->producer.store(0, std::memory_order_relaxed);
  h->consumer.store(0, std::memory_order_relaxed);
  // Magic last, with release: an attacher that sees it sees the rest of the header too.
  std::atomic_ref<std::uint32_t>(h->magic).store(kControlRingMagic, std::memory_order_release);
  return {};
}

Result<ControlRing> ControlRing::attach(std::span<std::byte> area, std::string_view name) {
  const std::string who = "control ring '" + std::string(name) + "'";
  if (area.size() < kControlRingHeaderSize) {
    return Error{EINVAL, who + ": area of " + dec(area.size()) + " bytes is smaller than the " +
                             dec(kControlRingHeaderSize) + "-byte header"};
  }
  if (reinterpret_cast<std::uintptr_t>(area.data()) % alignof(ControlRingHeader) != 0) {
    return Error{EINVAL, who + ": area is not 64-byte aligned"};
  }
  // One snapshot of the geometry; it is never read from shared memory again.
  auto* shared = reinterpret_cast<ControlRingHeader*>(area.data());
  struct {
    std::uint32_t magic, version, capacity;
  } g{};
  g.magic = std::atomic_ref<std::uint32_t>(shared->magic).load(std::memory_order_acquire);
  g.version = shared->version;
  g.capacity = shared->capacity;
  if (g.magic != kControlRingMagic) {
    return Error{EPROTO, who + ": bad magic " + hex(g.magic) + " (not formatted?)"};
  }
  if (g.version != kControlRingVersion) {
    return Error{EPROTO, who + ": version " + dec(g.version) + ", this build speaks " +
                             dec(kControlRingVersion)};
  }
  if (Status s = check_capacity(who, g.capacity); !s) return s.error();
  if (Status s = check_area(who, area, g.capacity); !s) return s.error();

  ControlRing r;
  r.hdr_ = shared;
  r.data_ = area.data() + kControlRingHeaderSize;
  r.capacity_ = g.capacity;
  r.mask_ = std::uint64_t{g.capacity} - 1;
  r.name_ = std::string(name);
  const std::uint64_t prod = r.hdr_->producer.load(std::memory_order_acquire);
  const std::uint64_t cons = r.hdr_->consumer.load(std::memory_order_acquire);
  if (cons > prod || prod - cons > g.capacity || ((prod | cons) & kAlignMask) != 0) {
    return Error{EPROTO, who + ": corrupt indices (producer " + dec(prod) + ", consumer " +
                             dec(cons) + ", capacity " + dec(g.capacity) + ")"};
  }
  r.producer_ = prod;
  r.consumer_ = cons;
  return r;
}

void ControlRing::copy_out(std::uint64_t index, void* dst, std::size_t n) const {
  if (n == 0) return;
  const auto pos = static_cast<std::size_t>(index & mask_);
  const std::size_t first = std::min(n, std::size_t{capacity_} - pos);
  std::memcpy(dst, data_ + pos, first);
  if (first < n) std::memcpy(static_cast<std::byte*>(dst) + first, data_, n - first);
}

void ControlRing::copy_in(std::uint64_t index, const void* src, std::size_t n) {
  if (n == 0) return;
  const auto pos = static_cast<std::size_t>(index & mask_);
  const std::size_t first = std::min(n, std::size_t{capacity_} - pos);
  std::memcpy(data_ + pos, src, first);
  if (first < n) std::memcpy(data_, static_cast<const std::byte*>(src) + first, n - first);
}

Error ControlRing::break_ring(std::string what) {
  broken_ = Error{EPROTO, "control ring '" + name_ + "' broken: " + std::move(what) +
                              "; the peer corrupted the ring, re-create the channel"};
  return *broken_;
}

std::uint64_t ControlRing::backlog_bytes() const {
  const std::uint64_t p = hdr_->producer.load(std::memory_order_acquire);
  const std::uint64_t c = hdr_->consumer.load(std::memory_order_acquire);
  return p >= c ? p - c : 0;
}

Status ControlRing::write(std::uint32_t type, std::span<const std::byte> payload) {
  if (broken_) return *broken_;
  if (payload.size() > max_payload()) {
    return Error{EMSGSIZE, "control ring '" + name_ + "': payload of " + dec(payload.size()) +
                               " bytes can never fit (at most " + dec(max_payload()) +
                               " in a ring of " + dec(capacity_) + " bytes)"};
  }
  const std::uint64_t cons = hdr_->consumer.load(std::memory_order_acquire);
  if (cons > producer_) {
    return break_ring("consumer index " + dec(cons) + " ahead of producer index " + dec(producer_));
  }
  if (producer_ - cons > capacity_) {
    return break_ring("consumer index " + dec(cons) + " more than " + dec(capacity_) +
                      " bytes behind producer index " + dec(producer_));
  }
  const std::uint64_t need = frame_size(payload.size());
  // Short messages stay in std::string's inline buffer: a full ring is routine, not an error
  // worth an allocation.
  if (need > capacity_ - (producer_ - cons)) return Error{EAGAIN, "ring full"};

  const ControlFrameHeader h{kControlFrameMagic, type, static_cast<std::uint32_t>(payload.size()),
                             checksum(payload)};
  copy_in(producer_, &h, sizeof h);
  copy_in(producer_ + sizeof h, payload.data(), payload.size());
  static constexpr std::array<std::byte, kControlFrameAlign> kZeros{};
  copy_in(producer_ + sizeof h + payload.size(), kZeros.data(),
          static_cast<std::size_t>(need - sizeof h - payload.size()));
  producer_ += need;
  // Publish only now: the consumer never sees a half-written frame from an honest producer.
  hdr_->producer.store(producer_, std::memory_order_release);
  return {};
}

bool ControlRing::probe(std::uint64_t index, std::uint64_t producer, Frame& out,
                        std::string* why) const {
  const std::uint64_t avail = producer - index;
  if (avail < kControlFrameHeaderSize) {
    if (why) *why = "truncated frame header (" + dec(avail) + " bytes before the producer index)";
    return false;
  }
  ControlFrameHeader h;
  copy_out(index, &h, sizeof h);  // private copy first: the peer may still be writing
  if (h.magic != kControlFrameMagic) {
    if (why) *why = "bad frame magic " + hex(h.magic);
    return false;
  }
  if (h.length > max_payload()) {
    if (why) {
      *why = "frame length " + dec(h.length) + " exceeds the ring's maximum payload " +
             dec(max_payload());
    }
    return false;
  }
  if (frame_size(h.length) > avail) {
    if (why) {
      *why = "truncated frame: length " + dec(h.length) + " needs " + dec(frame_size(h.length)) +
             " bytes, only " + dec(avail) + " published";
    }
    return false;
  }
  out.payload.resize(h.length);
  copy_out(index + sizeof h, out.payload.data(), h.length);
  const std::uint32_t crc = checksum(out.payload);
  if (crc != h.crc) {
    if (why) *why = "CRC mismatch (header " + hex(h.crc) + ", payload " + hex(crc) + ")";
    return false;
  }
  out.type = h.type;
  return true;
}

Result<ControlRing::Frame> ControlRing::read() {
  Frame f;
  if (Status s = read_into(f); !s) return s.error();
  return f;
}

Status ControlRing::read_into(Frame& out) {
  if (broken_) return *broken_;
  const std::uint64_t prod = hdr_->producer.load(std::memory_order_acquire);
  if (prod < consumer_) {
    return break_ring("producer index " + dec(prod) + " behind consumer index " + dec(consumer_));
  }
  if (prod - consumer_ > capacity_) {
    return break_ring("producer index " + dec(prod) + " more than " + dec(capacity_) +
                      " bytes ahead of consumer index " + dec(consumer_));
  }
  if ((prod & kAlignMask) != 0) {
    return break_ring("producer index " + dec(prod) + " is not 8-byte aligned");
  }
  if (prod == consumer_) return Error{EAGAIN, "ring empty"};

  std::string why;
  if (probe(consumer_, prod, out, &why)) {
    consumer_ += frame_size(out.payload.size());
    hdr_->consumer.store(consumer_, std::memory_order_release);
    return {};
  }

  // Resync: the frame at consumer_ is garbage, and its length cannot be trusted. Step forward one
  // alignment unit at a time to the next position holding a complete valid frame, or to the
  // producer index. The frame found is delivered by the next read().
  const std::uint64_t bad = consumer_;
  std::uint64_t next = bad + kControlFrameAlign;
  while (next < prod && !probe(next, prod, scratch_, nullptr)) next += kControlFrameAlign;
  consumer_ = next;
  hdr_->consumer.store(consumer_, std::memory_order_release);
  ++bad_frames_;
  skipped_bytes_ += next - bad;
  return Error{EBADMSG, "control ring '" + name_ + "': " + why + " at ring offset " +
                            dec(bad & mask_) + " (index " + dec(bad) + "); skipped " +
                            dec(next - bad) + " bytes to " +
                            (next == prod ? std::string("the producer index")
                                          : "the next valid frame at offset " + dec(next & mask_))};
}

}  // namespace tosec::rpc
