#include "tosec/rpc/guest_channel.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <new>
#include <string>

namespace tosec::rpc {

namespace {

Status check_config(const GuestChannelConfig& c) {
  auto bad = [](const char* field, std::uint32_t v, const char* why) {
    return Error{EINVAL,
                 std::string("guest channel: ") + field + " " + std::to_string(v) + " " + why};
  };
  if (c.lanes == 0 || c.lanes > 256) return bad("lanes", c.lanes, "must be in [1, 256]");
  if (!std::has_single_bit(c.ring_slots) || c.ring_slots < 8 || c.ring_slots > 65536) {
    return bad("ring_slots", c.ring_slots, "must be a power of two in [8, 65536]");
  }
  if (c.max_sockets == 0 || c.max_sockets > 1'000'000) {
    return bad("max_sockets", c.max_sockets, "must be in [1, 1000000]");
  }
  if (!std::has_single_bit(c.socket_rx_entries) || c.socket_rx_entries < 4 ||
      c.socket_rx_entries > 4096) {
    return bad("socket_rx_entries", c.socket_rx_entries, "must be a power of two in [4, 4096]");
  }
  if (c.chunk_size < 64 || c.chunk_size % 64 != 0 || c.chunk_size > (1U << 24)) {
    return bad("chunk_size", c.chunk_size, "must be a multiple of 64 in [64, 16 MiB]");
  }
  if (c.tx_chunks_per_lane == 0 || std::uint64_t{c.tx_chunks_per_lane} * c.lanes > (1U << 24)) {
    return bad("tx_chunks_per_lane", c.tx_chunks_per_lane, "must be in [1, 2^24 / lanes]");
  }
  if (c.rx_chunks == 0 || c.rx_chunks > (1U << 24))
    return bad("rx_chunks", c.rx_chunks, "must be in [1, 2^24]");
  return {};
}

}  // namespace

RegionLayout guest_region_layout(const GuestChannelConfig& c) {
  RegionLayout l;
  l.add_raw("geometry", sizeof(GuestGeometry))
      .add_raw("lanes", std::uint64_t{c.lanes} * lane_stride(c.ring_slots))
      .add_raw("sockets", std::uint64_t{c.max_sockets} * socket_stride(c.socket_rx_entries))
      .add_pool("pool.tx", c.lanes * c.tx_chunks_per_lane, c.chunk_size)
      .add_pool("pool.rx", c.rx_chunks, c.chunk_size);
  return l;
}

Result<GuestChannel> GuestChannel::attach(const RegionView& view, const GuestChannelConfig& cfg) {
  if (auto s = check_config(cfg); !s) return s.error();
  auto lanes = view.find("lanes", AreaKind::kRaw);
  if (!lanes) return lanes.error();
  auto sockets = view.find("sockets", AreaKind::kRaw);
  if (!sockets) return sockets.error();
  const std::uint64_t lanes_need = std::uint64_t{cfg.lanes} * lane_stride(cfg.ring_slots);
  const std::uint64_t sockets_need =
      std::uint64_t{cfg.max_sockets} * socket_stride(cfg.socket_rx_entries);
  if (lanes->size < lanes_need) {
    return Error{EPROTO, "guest channel: area 'lanes' has " + std::to_string(lanes->size) +
                             " bytes, geometry needs " + std::to_string(lanes_need)};
  }
  if (sockets->size < sockets_need) {
    return Error{EPROTO, "guest channel: area 'sockets' has " + std::to_string(sockets->size) +
                             " bytes, geometry needs " + std::to_string(sockets_need)};
  }
  auto tx = BufferPool::attach(view, "pool.tx");
  if (!tx) return tx.error();
  auto rx = BufferPool::attach(view, "pool.rx");
  if (!rx) return rx.error();
  if (tx->chunk_size() != cfg.chunk_size || rx->chunk_size() != cfg.chunk_size ||
      tx->chunk_count() != cfg.lanes * cfg.tx_chunks_per_lane ||
      rx->chunk_count() != cfg.rx_chunks) {
    return Error{EPROTO, "guest channel: pool geometry does not match the published geometry"};
  }
  GuestChannel g;
  g.cfg_ = cfg;
  g.lanes_ = view.area_bytes(*lanes).first(lanes_need);
  g.sockets_ = view.area_bytes(*sockets).first(sockets_need);
  g.tx_ = std::move(*tx);
  g.rx_ = std::move(*rx);
  return g;
}

Result<GuestChannel> GuestChannel::attach_toe(const RegionView& view,
                                              const GuestChannelConfig& cfg) {
  return attach(view, cfg);
}

Result<GuestChannel> GuestChannel::attach_guest(const RegionView& view) {
  auto geo = view.find("geometry", AreaKind::kRaw);
  if (!geo) return geo.error();
  GuestGeometry g{};
  std::memcpy(&g, view.area_bytes(*geo).data(), sizeof g);  // copy, then validate
  if (g.version != kGuestChannelVersion) {
    return Error{EPROTO, "guest channel: version " + std::to_string(g.version) + ", expected " +
                             std::to_string(kGuestChannelVersion)};
  }
  GuestChannelConfig cfg{g.lanes,      g.ring_slots,         g.max_sockets, g.socket_rx_entries,
                         g.chunk_size, g.tx_chunks_per_lane, g.rx_chunks};
  return attach(view, cfg);
}

Status format_guest_channel(const RegionView& view, const GuestChannelConfig& cfg) {
  auto ch = GuestChannel::attach_toe(view, cfg);
  if (!ch) return ch.error();
  for (std::uint32_t lane = 0; lane < cfg.lanes; ++lane) {
    auto base = ch->lanes_.subspan(std::size_t{lane} * lane_stride(cfg.ring_slots));
    const std::size_t ring_bytes =
        kRingHeaderSize + std::size_t{cfg.ring_slots} * sizeof(Descriptor);
    if (auto s = SpscRing::format(base.first(ring_bytes), cfg.ring_slots, sizeof(Descriptor)); !s)
      return s;
    if (auto s = SpscRing::format(base.subspan(ring_bytes, ring_bytes), cfg.ring_slots,
                                  sizeof(Descriptor));
        !s) {
      return s;
    }
  }
  const std::size_t stride = socket_stride(cfg.socket_rx_entries);
  for (std::uint32_t id = 0; id < cfg.max_sockets; ++id) {
    auto base = ch->sockets_.subspan(std::size_t{id} * stride, stride);
    new (base.data()) SocketSlot{};
    if (auto s = SpscRing::format(base.subspan(sizeof(SocketSlot)), cfg.socket_rx_entries,
                                  sizeof(RxEntry));
        !s) {
      return s;
    }
  }
  auto geo = view.find("geometry", AreaKind::kRaw);
  if (!geo) return geo.error();
  GuestGeometry g{};
  g.version = kGuestChannelVersion;
  g.lanes = cfg.lanes;
  g.ring_slots = cfg.ring_slots;
  g.max_sockets = cfg.max_sockets;
  g.socket_rx_entries = cfg.socket_rx_entries;
  g.chunk_size = cfg.chunk_size;
  g.tx_chunks_per_lane = cfg.tx_chunks_per_lane;
  g.rx_chunks = cfg.rx_chunks;
  std::memcpy(view.area_bytes(*geo).data(), &g, sizeof g);
  return {};
}

Result<SpscRing> GuestChannel::lane_ring(std::uint32_t lane, bool request, RingEnd end) const {
  if (lane >= cfg_.lanes) {
    return Error{EINVAL, "guest channel: lane " + std::to_string(lane) + " out of range"};
  }
  const std::size_t ring_bytes =
      kRingHeaderSize + std::size_t{cfg_.ring_slots} * sizeof(Descriptor);
  auto base = lanes_.subspan(std::size_t{lane} * lane_stride(cfg_.ring_slots));
  auto area = request ? base.first(ring_bytes) : base.subspan(ring_bytes, ring_bytes);
  return SpscRing::attach(area, cfg_.ring_slots, sizeof(Descriptor), end,
                          (request ? "req." : "cpl.") + std::to_string(lane));
}

SocketSlot* GuestChannel::slot(std::uint32_t socket) const {
  if (socket >= cfg_.max_sockets) return nullptr;
  return reinterpret_cast<SocketSlot*>(sockets_.data() +
                                       std::size_t{socket} * socket_stride(cfg_.socket_rx_entries));
}

Result<SpscRing> GuestChannel::rx_ring(std::uint32_t socket, RingEnd end) const {
  if (socket >= cfg_.max_sockets) {
    return Error{EINVAL, "guest channel: socket " + std::to_string(socket) + " out of range"};
  }
  const std::size_t stride = socket_stride(cfg_.socket_rx_entries);
  auto area = sockets_.subspan(std::size_t{socket} * stride + sizeof(SocketSlot),
                               stride - sizeof(SocketSlot));
  return SpscRing::attach(area, cfg_.socket_rx_entries, sizeof(RxEntry), end,
                          "rx." + std::to_string(socket));
}

void rx_lock_wake(std::atomic<std::uint32_t>& word, int count) {
  // Not FUTEX_PRIVATE_FLAG: the word lives in memory several processes map.
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, count, nullptr, nullptr,
          0);
}

}  // namespace tosec::rpc
