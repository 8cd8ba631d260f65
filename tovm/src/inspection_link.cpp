#include "tosec/tovm/inspection_link.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace tosec::tovm {

namespace {

std::string engine_name(tosec::v1::EngineType e) {
  switch (e) {
    case tosec::v1::ENGINE_TYPE_IDS:
      return "ids";
    case tosec::v1::ENGINE_TYPE_WAF:
      return "waf";
    case tosec::v1::ENGINE_TYPE_AV:
      return "av";
    case tosec::v1::ENGINE_TYPE_ACL:
      return "acl";
    default:
      return "custom";
  }
}

rpc::Result<tosec::v1::Topology> read_topology(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return rpc::errno_error("cannot read topology " + path);
  tosec::v1::Topology t;
  if (!t.ParseFromIstream(&in)) {
    return rpc::Error{EINVAL, "topology " + path + " is not a tosec.v1.Topology"};
  }
  return t;
}

}  // namespace

rpc::Result<std::unique_ptr<InspectionLink>> InspectionLink::create(
    const InspectionLinkOptions& opts) {
  auto topo = read_topology(opts.topology_file);
  if (!topo) return topo.error();
  std::unique_ptr<InspectionLink> link(new InspectionLink());
  auto policies = PolicyMatcher::create(*topo, opts.guest);
  if (!policies) return policies.error();
  link->policies_.emplace(std::move(*policies));

  svm::InspectionPlaneOptions po;
  std::uint32_t max_node = 0;
  for (const auto& s : topo->svms()) {
    if (s.id() == 0 || s.id() > 15) {
      return rpc::Error{EINVAL, "topology: svm \"" + s.name() + "\" has node id " +
                                    std::to_string(s.id()) + " (must be in [1, 15])"};
    }
    po.svms.push_back({s.name(), static_cast<std::uint16_t>(s.id()), engine_name(s.engine())});
    max_node = std::max(max_node, s.id());
  }
  po.region.nodes = std::max<std::uint32_t>(2, max_node + 1);
  po.name = "tovm." + opts.guest;
  if (!opts.alert_log.empty()) {
    auto log = svm::AlertLog::open(opts.alert_log);
    if (!log) return log.error();
    link->alerts_ = std::move(*log);
    po.alerts = link->alerts_.get();
  }
  if (auto s = link->client_.connect(opts.ivshmem_socket); !s) {
    return rpc::Error{s.code(), "inspection region " + opts.ivshmem_socket + ": " + s.message()};
  }
  auto region = link->client_.region().bytes();
  // The pool takes what the rings leave of the region, up to 4096 chunks.
  for (po.region.chunks = 4096; po.region.chunks > 64; po.region.chunks /= 2) {
    if (rpc::inspection_region_layout(po.region).required_size() <= region.size()) break;
  }
  if (rpc::inspection_region_layout(po.region).required_size() > region.size()) {
    return rpc::Error{ENOSPC, "inspection region of " + std::to_string(region.size()) +
                                  " bytes is too small for " + std::to_string(po.region.nodes) +
                                  " nodes"};
  }
  link->chunk_size_ = po.region.chunk_size;
  auto plane = svm::InspectionPlane::create(region, po, link->client_.doorbells(),
                                            link->client_.doorbells(), link->client_.self_id(), 0);
  if (!plane) return plane.error();
  link->plane_ = std::move(*plane);
  svm::InspectionPlane* p = link->plane_.get();
  link->client_.on_peer_left([p](rpc::PeerId peer) { p->node_departed(peer); });
  tosec::v1::ChainUpdate chains;
  chains.set_generation(topo->generation());
  for (const auto& c : topo->chains()) *chains.add_upsert() = c;
  if (auto s = link->plane_->update_chains(chains); !s) return s.error();
  return link;
}

rpc::Result<std::optional<std::uint64_t>> InspectionLink::open(svm::StreamInfo& info) {
  const auto chain = policies_->match(info);
  if (!chain) return std::optional<std::uint64_t>{};
  info.stream_id = next_stream_++;
  if (auto s = plane_->open_stream(info, chain->chain_id); !s) {
    return rpc::Error{s.code(), "chain " + chain->chain_name + ": " + s.message()};
  }
  return std::optional<std::uint64_t>{info.stream_id};
}

std::string InspectionLink::status_json() const {
  const auto s = plane_->stats();
  std::ostringstream o;
  o << "{\"submitted\":" << s.submitted << ",\"delivered\":" << s.delivered
    << ",\"blocked_streams\":" << s.blocked_streams
    << ",\"dropped_payloads\":" << s.dropped_payloads
    << ",\"deadline_misses\":" << s.deadline_misses << ",\"svm_down_events\":" << s.svm_down_events
    << ",\"bypasses\":" << s.bypasses << ",\"refused_streams\":" << s.refused_streams
    << ",\"inflight\":" << s.inflight << ",\"pool_free\":" << s.pool_free << "}";
  return o.str();
}

}  // namespace tosec::tovm
