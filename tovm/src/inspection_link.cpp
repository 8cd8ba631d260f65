#include "tosec/tovm/inspection_link.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "tosec/rpc/json_escape.h"

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
  link->opts_ = opts;

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
  link->mesh_ = po.svms;
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
  if (auto s = link->apply(*topo); !s) return s.error();
  return link;
}

rpc::Status InspectionLink::apply(const tosec::v1::Topology& topo) {
  // The mesh is fixed: an SVM it has must keep its node id, and chains may name only its SVMs.
  for (const auto& s : topo.svms()) {
    for (const auto& m : mesh_) {
      if (m.name == s.name() && m.node != s.id()) {
        return rpc::Error{EINVAL, "svm \"" + s.name() + "\" moved from node " +
                                      std::to_string(m.node) + " to " + std::to_string(s.id()) +
                                      " (the inspection mesh is fixed: restart the TOE)"};
      }
    }
  }
  auto in_mesh = [&](const std::string& name) {
    return std::any_of(mesh_.begin(), mesh_.end(),
                       [&](const svm::SvmNode& m) { return m.name == name; });
  };
  for (const auto& c : topo.chains()) {
    for (const auto& st : c.steps()) {
      std::vector<std::string> names(st.parallel().svms().begin(), st.parallel().svms().end());
      if (!st.has_parallel()) names.assign(1, st.svm());
      for (const auto& n : names) {
        if (!n.empty() && !in_mesh(n)) {
          return rpc::Error{EINVAL, "chain \"" + c.name() + "\" names svm \"" + n +
                                        "\", which this TOE's inspection mesh does not have "
                                        "(SVMs cannot be added live: restart the TOE)"};
        }
      }
    }
  }
  auto policies = PolicyMatcher::create(topo, opts_.guest);
  if (!policies) return policies.error();
  tosec::v1::ChainUpdate chains;
  chains.set_generation(topo.generation());
  std::vector<std::uint32_t> ids;
  for (const auto& c : topo.chains()) {
    *chains.add_upsert() = c;
    ids.push_back(c.id());
  }
  for (std::uint32_t old : chain_ids_) {
    if (std::find(ids.begin(), ids.end(), old) == ids.end()) chains.add_remove_ids(old);
  }
  if (auto s = plane_->update_chains(chains); !s) return s;  // all or nothing
  policies_.emplace(std::move(*policies));
  chain_ids_ = std::move(ids);
  generation_ = topo.generation();
  return {};
}

rpc::Status InspectionLink::reload() {
  auto topo = read_topology(opts_.topology_file);
  rpc::Status s = topo ? apply(*topo) : rpc::Status(topo.error());
  reload_error_ = s ? std::string() : s.message();
  return s;
}

std::string InspectionLink::svms_json() const {
  std::string o = "[";
  bool first = true;
  for (const auto& n : plane_->svm_stats()) {
    if (!first) o += ',';
    first = false;
    o += "{\"name\":" + rpc::json_quote(n.name) + ",\"node\":" + std::to_string(n.node) +
         ",\"payloads\":" + std::to_string(n.payloads) + ",\"bytes\":" + std::to_string(n.bytes) +
         ",\"pass\":" + std::to_string(n.pass) + ",\"block\":" + std::to_string(n.block) +
         ",\"latency_us\":" + n.latency.json() + '}';
  }
  return o + ']';
}

void InspectionLink::append_rings_json(std::string& o, bool& first) {
  for (const auto& r : plane_->ring_stats()) {
    if (!first) o += ',';
    first = false;
    o += "{\"name\":" + rpc::json_quote(r.name) + ",\"capacity\":" + std::to_string(r.capacity) +
         ",\"occupancy\":" + std::to_string(r.occupancy) +
         ",\"backlog\":" + std::to_string(r.backlog) + '}';
  }
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
