#include "tosec/rpc/inspection_channel.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>
#include <string>

namespace tosec::rpc {

namespace {

std::size_t control_stride(std::uint32_t bytes) { return ControlRing::area_size(bytes); }

}  // namespace

std::uint64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string_view to_string(InspectReason r) {
  switch (r) {
    case InspectReason::kNone:
      return "none";
    case InspectReason::kEngine:
      return "engine verdict";
    case InspectReason::kUnknownStream:
      return "unknown stream";
    case InspectReason::kBadPayload:
      return "bad payload reference";
    case InspectReason::kEngineError:
      return "engine error";
  }
  return "unknown reason";
}

Status check_inspection_config(const InspectionConfig& c) {
  auto bad = [](const char* field, std::uint32_t v, const char* why) {
    return Error{EINVAL,
                 std::string("inspection channel: ") + field + " " + std::to_string(v) + " " + why};
  };
  if (c.nodes < 2 || c.nodes > kMaxInspectionNodes) {
    return bad("nodes", c.nodes, "must be in [2, 16] (the TOE + 1..15 SVMs)");
  }
  if (!std::has_single_bit(c.ring_slots) || c.ring_slots < 8 || c.ring_slots > 65536) {
    return bad("ring_slots", c.ring_slots, "must be a power of two in [8, 65536]");
  }
  if (c.chunk_size < 64 || c.chunk_size % 64 != 0 || c.chunk_size > (1U << 24)) {
    return bad("chunk_size", c.chunk_size, "must be a multiple of 64 in [64, 16 MiB]");
  }
  if (c.chunks == 0 || c.chunks > (1U << 24)) {
    return bad("chunks", c.chunks, "must be in [1, 2^24]");
  }
  if (!std::has_single_bit(c.control_bytes) || c.control_bytes < 4096 ||
      c.control_bytes > (1U << 24)) {
    return bad("control_bytes", c.control_bytes, "must be a power of two in [4096, 16 MiB]");
  }
  return {};
}

RegionLayout inspection_region_layout(const InspectionConfig& c) {
  RegionLayout l;
  l.add_raw("geometry", sizeof(InspectionGeometry))
      .add_raw("nodes", std::uint64_t{c.nodes} * sizeof(NodeSlot))
      .add_raw("mesh", std::uint64_t{c.nodes} * c.nodes * inspection_ring_stride(c.ring_slots))
      .add_raw("control", std::uint64_t{c.nodes} * 2 * control_stride(c.control_bytes))
      .add_pool("pool", c.chunks, c.chunk_size);
  return l;
}

Result<InspectionChannel> InspectionChannel::attach(const RegionView& view,
                                                    const InspectionConfig& cfg) {
  if (auto s = check_inspection_config(cfg); !s) return s.error();
  auto need = [&](const char* name, std::uint64_t bytes) -> Result<std::span<std::byte>> {
    auto a = view.find(name, AreaKind::kRaw);
    if (!a) return a.error();
    if (a->size < bytes) {
      return Error{EPROTO, std::string("inspection channel: area '") + name + "' has " +
                               std::to_string(a->size) + " bytes, geometry needs " +
                               std::to_string(bytes)};
    }
    return view.area_bytes(*a).first(bytes);
  };
  auto nodes = need("nodes", std::uint64_t{cfg.nodes} * sizeof(NodeSlot));
  if (!nodes) return nodes.error();
  auto mesh =
      need("mesh", std::uint64_t{cfg.nodes} * cfg.nodes * inspection_ring_stride(cfg.ring_slots));
  if (!mesh) return mesh.error();
  auto control = need("control", std::uint64_t{cfg.nodes} * 2 * control_stride(cfg.control_bytes));
  if (!control) return control.error();
  auto pool = BufferPool::attach(view, "pool");
  if (!pool) return pool.error();
  if (pool->chunk_size() != cfg.chunk_size || pool->chunk_count() != cfg.chunks) {
    return Error{EPROTO, "inspection channel: pool has " + std::to_string(pool->chunk_count()) +
                             " x " + std::to_string(pool->chunk_size()) +
                             " B chunks, geometry says " + std::to_string(cfg.chunks) + " x " +
                             std::to_string(cfg.chunk_size)};
  }
  InspectionChannel ch;
  ch.cfg_ = cfg;
  ch.nodes_ = *nodes;
  ch.mesh_ = *mesh;
  ch.control_ = *control;
  ch.pool_ = std::move(*pool);
  return ch;
}

Result<InspectionChannel> InspectionChannel::attach_toe(const RegionView& view,
                                                        const InspectionConfig& cfg) {
  return attach(view, cfg);
}

Result<InspectionChannel> InspectionChannel::attach_svm(const RegionView& view) {
  auto geo = view.find("geometry", AreaKind::kRaw);
  if (!geo) return geo.error();
  if (geo->size < sizeof(InspectionGeometry)) {
    return Error{EPROTO, "inspection channel: area 'geometry' too small"};
  }
  InspectionGeometry g{};
  std::memcpy(&g, view.area_bytes(*geo).data(), sizeof g);  // copy, then validate
  if (g.version != kInspectionChannelVersion) {
    return Error{EPROTO, "inspection channel: version " + std::to_string(g.version) +
                             ", expected " + std::to_string(kInspectionChannelVersion) +
                             " (is the region formatted yet?)"};
  }
  InspectionConfig cfg{g.nodes, g.ring_slots, g.chunk_size, g.chunks, g.control_bytes};
  return attach(view, cfg);
}

Status format_inspection_channel(const RegionView& view, const InspectionConfig& cfg) {
  auto ch = InspectionChannel::attach_toe(view, cfg);
  if (!ch) return ch.error();
  const std::size_t rs = inspection_ring_stride(cfg.ring_slots);
  for (std::size_t i = 0; i < std::size_t{cfg.nodes} * cfg.nodes; ++i) {
    if (auto s =
            SpscRing::format(ch->mesh_.subspan(i * rs, rs), cfg.ring_slots, sizeof(InspectDesc));
        !s) {
      return s;
    }
  }
  const std::size_t cs = control_stride(cfg.control_bytes);
  for (std::size_t i = 0; i < std::size_t{cfg.nodes} * 2; ++i) {
    if (auto s = ControlRing::format(ch->control_.subspan(i * cs, cs), cfg.control_bytes); !s) {
      return s;
    }
  }
  for (std::uint16_t n = 0; n < cfg.nodes; ++n) {
    new (ch->nodes_.data() + std::size_t{n} * sizeof(NodeSlot)) NodeSlot{};
  }
  auto geo = view.find("geometry", AreaKind::kRaw);
  if (!geo) return geo.error();
  InspectionGeometry g{};
  g.version = kInspectionChannelVersion;
  g.nodes = cfg.nodes;
  g.ring_slots = cfg.ring_slots;
  g.chunk_size = cfg.chunk_size;
  g.chunks = cfg.chunks;
  g.control_bytes = cfg.control_bytes;
  std::memcpy(view.area_bytes(*geo).data(), &g, sizeof g);
  std::atomic_thread_fence(std::memory_order_release);
  return {};
}

Result<SpscRing> InspectionChannel::ring(std::uint16_t from, std::uint16_t to, RingEnd end) const {
  if (from >= cfg_.nodes || to >= cfg_.nodes || from == to) {
    return Error{EINVAL, "inspection channel: no ring from node " + std::to_string(from) +
                             " to node " + std::to_string(to) + " (" + std::to_string(cfg_.nodes) +
                             " nodes)"};
  }
  const std::size_t rs = inspection_ring_stride(cfg_.ring_slots);
  const std::size_t index = std::size_t{from} * cfg_.nodes + to;
  return SpscRing::attach(mesh_.subspan(index * rs, rs), cfg_.ring_slots, sizeof(InspectDesc), end,
                          "insp." + std::to_string(from) + "." + std::to_string(to));
}

Result<ControlRing> InspectionChannel::control(std::uint16_t node, bool down) const {
  if (node == kToeNode || node >= cfg_.nodes) {
    return Error{EINVAL, "inspection channel: no control ring for node " + std::to_string(node)};
  }
  const std::size_t cs = control_stride(cfg_.control_bytes);
  const std::size_t index = std::size_t{node} * 2 + (down ? 0 : 1);
  return ControlRing::attach(control_.subspan(index * cs, cs),
                             "ctl." + std::to_string(node) + (down ? ".down" : ".up"));
}

NodeSlot* InspectionChannel::node(std::uint16_t id) const {
  if (id >= cfg_.nodes) return nullptr;
  return reinterpret_cast<NodeSlot*>(nodes_.data() + std::size_t{id} * sizeof(NodeSlot));
}

std::uint32_t InspectionChannel::announce(std::uint16_t id, PeerId peer, Vector vector,
                                          std::string_view name) const {
  NodeSlot* s = node(id);
  if (s == nullptr) return 0;
  std::memset(s->name, 0, sizeof s->name);
  std::memcpy(s->name, name.data(), std::min(name.size(), sizeof s->name - 1));
  s->pid = static_cast<std::uint32_t>(::getpid());
  s->doorbell.store(pack_doorbell(peer, vector), std::memory_order_relaxed);
  s->busy_since_ns.store(0, std::memory_order_relaxed);
  s->heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
  const std::uint32_t inc = s->incarnation.load(std::memory_order_relaxed) + 1;
  s->incarnation.store(inc, std::memory_order_relaxed);
  // Online last, with release: whoever sees it sees where to ring.
  s->state.store(NodeState::kOnline, std::memory_order_release);
  return inc;
}

void InspectionChannel::retire(std::uint16_t id) const {
  if (NodeSlot* s = node(id)) s->state.store(NodeState::kLeaving, std::memory_order_release);
}

Result<std::pair<PeerId, Vector>> InspectionChannel::doorbell_of(std::uint16_t id) const {
  NodeSlot* s = node(id);
  if (s == nullptr || s->state.load(std::memory_order_acquire) != NodeState::kOnline) {
    return Error{ENOENT, "inspection channel: node " + std::to_string(id) + " is not online"};
  }
  const std::uint32_t d = s->doorbell.load(std::memory_order_relaxed);
  return std::pair<PeerId, Vector>{static_cast<PeerId>(d >> 16), static_cast<Vector>(d & 0xFFFFU)};
}

std::string validate_inspect_desc(const InspectDesc& d, std::uint16_t from, const BufferPool& pool,
                                  std::uint32_t max_steps) {
  if (d.kind != InspectKind::kPayload && d.kind != InspectKind::kVerdict &&
      d.kind != InspectKind::kStreamEnd) {
    return "kind " + std::to_string(static_cast<unsigned>(d.kind)) + " unknown";
  }
  if (d.from_node != from) {
    return "from_node " + std::to_string(d.from_node) + " but it came from node " +
           std::to_string(from);
  }
  if (d.direction > 1) return "direction " + std::to_string(d.direction) + " is not 0 or 1";
  if (d.step >= max_steps) {
    return "step " + std::to_string(d.step) + " >= " + std::to_string(max_steps);
  }
  if (d.kind == InspectKind::kPayload) {
    const BufferRef ref{d.chunk, d.offset, d.length};
    if (!pool.valid(ref)) {
      return "chunk " + std::to_string(d.chunk) + " offset " + std::to_string(d.offset) +
             " length " + std::to_string(d.length) + " outside pool '" + pool.name() + "' (" +
             std::to_string(pool.chunk_count()) + " x " + std::to_string(pool.chunk_size()) + ")";
    }
  }
  if (d.action > InspectAction::kBlock) {
    return "action " + std::to_string(static_cast<unsigned>(d.action)) + " unknown";
  }
  return {};
}

}  // namespace tosec::rpc
