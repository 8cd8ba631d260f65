// The TOE side of the inspection region (see inspection_plane.h for the contract).
#include "tosec/svm/inspection_plane.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "tosec/rpc/buffer_pool.h"
#include "tosec/rpc/control_channel.h"
#include "tosec/svm/stream_table.h"

namespace tosec::svm {

namespace {

using rpc::InspectAction;
using rpc::InspectDesc;
using rpc::InspectKind;
using rpc::InspectReason;

constexpr std::uint32_t kMaxSteps = 64;
constexpr std::uint32_t kBurst = 64;
constexpr std::uint64_t kCheckPeriodNs = 1'000'000;  // node and deadline checks, at most 1/ms

// One step of a stream's path: a chain step minus the SVMs it bypasses.
struct PathStep {
  std::uint8_t step = 0;  // index in Chain.steps
  bool group = false;     // a parallel group: members answer the TOE, which joins them
  std::vector<std::uint16_t> nodes;
};

struct ChainDef {
  std::uint32_t id = 0;
  std::string name;
  std::vector<PathStep> steps;
  bool fail_open = false;
  std::uint64_t step_deadline_ns = 0;
  std::uint32_t mask = 0;  // nodes of the chain
};

struct Stream {
  StreamInfo info;
  // Shared with chains_: a live chain change (update_chains) replaces the map's entry, and the
  // streams opened before it keep the definition they were opened with (docs/svm.md).
  std::shared_ptr<const ChainDef> chain;
  std::uint32_t chain_id = 0;
  bool fail_open = false;
  std::uint64_t step_deadline_ns = 0;
  std::vector<PathStep> path;  // outgoing order
  std::uint32_t mask = 0;      // nodes currently on the path
  std::uint32_t bypassed = 0;  // nodes bypassed (fail-open)
  bool blocked = false;
  bool closing = false;
  std::uint32_t next_seq[2] = {0, 0};
  std::uint64_t next_offset[2] = {0, 0};
  std::uint32_t deliver_seq[2] = {0, 0};
  std::map<std::uint32_t, std::uint64_t> passed[2];  // seq -> token, waiting for their turn
  std::uint32_t inflight = 0;
};

struct Flight {
  std::uint64_t stream_id = 0;
  std::uint8_t dir = 0;
  std::uint32_t chunk = 0;
  std::uint32_t length = 0;
  std::uint64_t stream_offset = 0;
  std::uint32_t seq = 0;
  std::uint8_t first_step = 0;  // chain step indices of the current segment
  std::uint8_t last_step = 0;
  std::uint32_t expect = 0;  // node bits whose pass verdict ends the segment
  std::uint32_t got = 0;
  std::uint64_t deadline_ns = 0;
  std::uint64_t handoff_ns = 0;  // when the current segment was handed to its first step
  bool passed = false;
};

std::uint32_t bit(std::uint16_t n) { return 1U << n; }

class Plane final : public InspectionPlane {
 public:
  Plane(InspectionPlaneOptions o, rpc::DoorbellRinger& ringer, rpc::DoorbellWaiter& waiter,
        rpc::Vector vector)
      : opt_(std::move(o)), ringer_(ringer), waiter_(waiter, vector, opt_.spin) {}

  rpc::Status init(std::span<std::byte> region, rpc::PeerId peer, rpc::Vector vector);

  rpc::Status update_chains(const tosec::v1::ChainUpdate& update) override;
  rpc::Status open_stream(const StreamInfo& info, std::uint32_t chain_id) override;
  rpc::Result<std::uint64_t> submit(std::uint64_t stream_id, Direction dir,
                                    std::span<const std::byte> bytes) override;
  rpc::Status close_stream(std::uint64_t stream_id) override;
  std::size_t poll(const PlaneCallbacks& cb) override;
  rpc::Result<bool> wait(std::int64_t timeout_ns) override;
  bool prepare_sleep() override;
  void after_wake() override;
  bool has_work() override;
  int max_sleep_ms() const override { return flights_.empty() && quarantine_.empty() ? -1 : 5; }
  void node_departed(rpc::PeerId peer) override;
  void mark_down(std::uint16_t node, const std::string& why) override;
  bool node_up(std::uint16_t node) const override { return node < down_.size() && !down_[node]; }
  std::vector<SvmStepStats> svm_stats() const override;
  std::vector<RingStats> ring_stats() override;
  PlaneStats stats() const override {
    PlaneStats s = stats_;
    s.inflight = static_cast<std::uint32_t>(flights_.size());
    s.pool_free = alloc_.free_count();
    return s;
  }
  const rpc::InspectionChannel& channel() const override { return *ch_; }
  bool stream_ok(std::uint64_t id) const override {
    auto it = streams_.find(id);
    return it != streams_.end() && !it->second.blocked;
  }
  std::string last_error() const override { return last_error_; }

 private:
  std::string svm_name(std::uint16_t node) const {
    for (const auto& s : opt_.svms) {
      if (s.node == node) return s.name;
    }
    return "node" + std::to_string(node);
  }
  std::string svm_engine(std::uint16_t node) const {
    for (const auto& s : opt_.svms) {
      if (s.node == node) return s.engine;
    }
    return {};
  }
  static std::size_t index_at(const Stream& s, std::uint8_t dir, std::size_t pos) {
    return dir == 0 ? pos : s.path.size() - 1 - pos;
  }
  static std::optional<std::size_t> pos_of(const Stream& s, std::uint8_t dir, std::uint8_t step) {
    for (std::size_t p = 0; p < s.path.size(); ++p) {
      if (s.path[index_at(s, dir, p)].step == step) return p;
    }
    return std::nullopt;
  }
  StreamRoute route_for(const Stream& s, std::size_t i) const;
  rpc::Status send_routes(const Stream& s);
  void send_desc(std::uint16_t to, const InspectDesc& d);
  void flush_out(std::uint16_t to);
  void dispatch(Stream& s, std::uint64_t token, Flight& f, std::size_t pos);
  void pass_flight(Stream& s, std::uint64_t token, Flight& f);
  void on_verdict(const InspectDesc& d, std::uint16_t from);
  void block_stream(Stream& s, BlockInfo info);
  void finish_stream(std::uint64_t id);
  void bypass(Stream& s, std::uint16_t node, const std::string& why);
  void write_bypass_alert(const Stream& s, std::uint16_t node);
  void check_nodes(std::uint64_t now);
  void check_deadlines(std::uint64_t now);
  void drain_up(std::uint16_t node);
  void release_chunk(std::uint32_t chunk) { (void)alloc_.free(chunk); }
  void quarantine(const Stream& s, std::uint32_t chunk) {
    // An SVM may still read the chunk (a group member, a late step): reuse it only later.
    quarantine_.emplace_back(rpc::monotonic_ns() + 2 * s.step_deadline_ns * (s.path.size() + 1),
                             chunk);
  }

  InspectionPlaneOptions opt_;
  rpc::DoorbellRinger& ringer_;
  rpc::Waiter waiter_;
  std::optional<rpc::RegionView> view_;
  std::optional<rpc::InspectionChannel> ch_;
  rpc::ChunkAllocator alloc_;
  std::vector<rpc::SpscRing> to_;    // ring[0][n], index n (0 unused)
  std::vector<rpc::SpscRing> from_;  // ring[n][0]
  std::vector<std::deque<InspectDesc>> outq_;
  std::vector<std::optional<rpc::ControlChannel>> ctl_down_;
  std::vector<std::optional<rpc::ControlChannel>> ctl_up_;
  std::vector<std::atomic<std::uint32_t>*> sleeping_;
  std::vector<bool> down_;
  std::vector<std::uint32_t> seen_inc_;  // incarnation last seen online; 0 = never
  std::vector<std::uint32_t> down_inc_;  // incarnation when marked down
  std::map<std::uint32_t, std::shared_ptr<const ChainDef>> chains_;
  std::vector<SvmStepStats> node_stats_;  // by node id; sized at init (no allocation later)
  std::unordered_map<std::uint64_t, Stream> streams_;
  std::unordered_map<std::uint64_t, Flight> flights_;
  std::vector<std::uint64_t> deliver_pending_;
  std::vector<BlockInfo> block_events_;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> quarantine_;  // release time, chunk
  std::unordered_map<std::uint64_t, tosec::v1::Alert> last_alert_;   // by stream
  std::uint64_t next_token_ = 0;
  std::uint64_t ctl_seq_ = 0;
  std::uint64_t last_check_ns_ = 0;
  PlaneStats stats_;
  std::string last_error_;
  std::vector<InspectDesc> buf_ = std::vector<InspectDesc>(kBurst);
};

rpc::Status Plane::init(std::span<std::byte> region, rpc::PeerId peer, rpc::Vector vector) {
  const auto& cfg = opt_.region;
  if (auto s = rpc::check_inspection_config(cfg); !s) return s;
  if (auto s = rpc::inspection_region_layout(cfg).format(region); !s) return s;
  auto view = rpc::RegionView::attach(region);
  if (!view) return view.error();
  view_.emplace(std::move(*view));
  if (auto s = rpc::format_inspection_channel(*view_, cfg); !s) return s;
  auto ch = rpc::InspectionChannel::attach_toe(*view_, cfg);
  if (!ch) return ch.error();
  ch_.emplace(std::move(*ch));
  for (const auto& s : opt_.svms) {
    if (s.node == rpc::kToeNode || s.node >= cfg.nodes) {
      return rpc::Error{EINVAL, "inspection plane: svm '" + s.name + "' has node " +
                                    std::to_string(s.node) + ", outside [1, " +
                                    std::to_string(cfg.nodes) + ")"};
    }
  }
  alloc_ = rpc::ChunkAllocator(cfg.chunks);
  const std::uint32_t n = cfg.nodes;
  to_.resize(n);
  from_.resize(n);
  outq_.resize(n);
  ctl_down_.resize(n);
  ctl_up_.resize(n);
  down_.assign(n, false);
  seen_inc_.assign(n, 0);
  down_inc_.assign(n, 0);
  for (std::uint16_t j = 1; j < n; ++j) {
    auto t = ch_->ring(rpc::kToeNode, j, rpc::RingEnd::kProducer);
    if (!t) return t.error();
    to_[j] = std::move(*t);
    auto f = ch_->ring(j, rpc::kToeNode, rpc::RingEnd::kConsumer);
    if (!f) return f.error();
    from_[j] = std::move(*f);
    auto d = ch_->control(j, true);
    if (!d) return d.error();
    ctl_down_[j].emplace(std::move(*d));
    auto u = ch_->control(j, false);
    if (!u) return u.error();
    ctl_up_[j].emplace(std::move(*u));
  }
  for (std::uint16_t j = 1; j < n; ++j) sleeping_.push_back(&from_[j].consumer_sleeping());
  node_stats_.resize(n);
  for (std::uint16_t j = 1; j < n; ++j) {
    node_stats_[j].name = svm_name(j);
    node_stats_[j].node = j;
  }
  ch_->announce(rpc::kToeNode, peer, vector, opt_.name);
  return {};
}

rpc::Status Plane::update_chains(const tosec::v1::ChainUpdate& u) {
  // All or nothing: every upsert is checked before the table changes, so a rejected update
  // leaves the chains in force as they were.
  std::vector<std::shared_ptr<const ChainDef>> built;
  for (const auto& c : u.upsert()) {
    auto def = std::make_unique<ChainDef>();
    def->id = c.id();
    def->name = c.name();
    def->fail_open = c.fail_policy() == tosec::v1::FAIL_POLICY_FAIL_OPEN;
    def->step_deadline_ns =
        (c.deadline_us() != 0 ? c.deadline_us() : opt_.default_deadline_us) * 1000;
    if (c.steps_size() > static_cast<int>(kMaxSteps)) {
      return rpc::Error{EINVAL, "chain '" + c.name() + "': " + std::to_string(c.steps_size()) +
                                    " steps, at most " + std::to_string(kMaxSteps)};
    }
    auto node_of = [&](const std::string& name) -> std::optional<std::uint16_t> {
      for (const auto& s : opt_.svms) {
        if (s.name == name) return s.node;
      }
      return std::nullopt;
    };
    for (int i = 0; i < c.steps_size(); ++i) {
      const auto& st = c.steps(i);
      PathStep ps;
      ps.step = static_cast<std::uint8_t>(i);
      std::vector<std::string> names;
      if (st.has_parallel()) {
        ps.group = true;
        names.assign(st.parallel().svms().begin(), st.parallel().svms().end());
      } else {
        names.push_back(st.svm());
      }
      if (names.empty() || (names.size() == 1 && names[0].empty())) {
        return rpc::Error{EINVAL,
                          "chain '" + c.name() + "' step " + std::to_string(i) + ": no SVM named"};
      }
      for (const auto& name : names) {
        auto n = node_of(name);
        if (!n) {
          return rpc::Error{EINVAL, "chain '" + c.name() + "' step " + std::to_string(i) +
                                        ": unknown svm '" + name + "'"};
        }
        if ((def->mask & bit(*n)) != 0) {
          return rpc::Error{EINVAL, "chain '" + c.name() + "': svm '" + name +
                                        "' appears twice (an SVM holds one stream state)"};
        }
        def->mask |= bit(*n);
        ps.nodes.push_back(*n);
      }
      def->steps.push_back(std::move(ps));
    }
    built.push_back(std::move(def));
  }
  for (std::uint32_t id : u.remove_ids()) chains_.erase(id);
  for (auto& def : built) chains_[def->id] = std::move(def);
  return {};
}

StreamRoute Plane::route_for(const Stream& s, std::size_t i) const {
  StreamRoute r;
  r.info = s.info;
  r.chain_id = s.chain_id;
  r.step = s.path[i].step;
  auto hop_to = [&](std::size_t j) {
    Hop h;
    h.kind = Hop::Kind::kSvm;
    h.step = s.path[j].step;
    h.nodes = s.path[j].nodes;
    return h;
  };
  if (!s.path[i].group) {
    if (i + 1 < s.path.size()) r.outbound = hop_to(i + 1);
    if (i > 0) r.inbound = hop_to(i - 1);
  }
  return r;
}

rpc::Status Plane::send_routes(const Stream& s) {
  for (std::size_t i = 0; i < s.path.size(); ++i) {
    const StreamRoute r = route_for(s, i);
    tosec::v1::ControlMessage m;
    m.set_seq(++ctl_seq_);
    m.set_sender(opt_.name);
    *m.mutable_stream_table_update()->add_add() = entry_from_route(r);
    for (std::uint16_t n : s.path[i].nodes) {
      if (auto st = ctl_down_[n]->send(m); !st) return st;
      // Control messages are rare: always ring (no sleeping flag on control rings).
      if (auto where = ch_->doorbell_of(n)) (void)ringer_.ring(where->first, where->second);
    }
  }
  return {};
}

rpc::Status Plane::open_stream(const StreamInfo& info, std::uint32_t chain_id) {
  if (streams_.contains(info.stream_id)) {
    return rpc::Error{
        EEXIST, "inspection plane: stream " + std::to_string(info.stream_id) + " is already open"};
  }
  auto c = chains_.find(chain_id);
  if (c == chains_.end()) {
    return rpc::Error{ENOENT, "inspection plane: no chain " + std::to_string(chain_id)};
  }
  const ChainDef& def = *c->second;
  Stream s;
  s.info = info;
  s.chain = c->second;
  s.chain_id = chain_id;
  s.fail_open = def.fail_open;
  s.step_deadline_ns = def.step_deadline_ns;
  for (const PathStep& ps : def.steps) {
    PathStep kept = ps;
    kept.nodes.clear();
    for (std::uint16_t n : ps.nodes) {
      if (!down_[n]) {
        kept.nodes.push_back(n);
        continue;
      }
      if (!def.fail_open) {
        ++stats_.refused_streams;
        return rpc::Error{EHOSTUNREACH, "inspection plane: chain '" + def.name + "': svm " +
                                            svm_name(n) + " down (fail-closed)"};
      }
      s.bypassed |= bit(n);
    }
    if (kept.nodes.empty()) continue;
    for (std::uint16_t n : kept.nodes) s.mask |= bit(n);
    s.path.push_back(std::move(kept));
  }
  if (auto st = send_routes(s); !st) {
    last_error_ = st.message();
    return st;
  }
  auto [it, ok] = streams_.emplace(info.stream_id, std::move(s));
  for (std::uint16_t n = 1; n < down_.size(); ++n) {
    if ((it->second.bypassed & bit(n)) != 0) {
      ++stats_.bypasses;
      write_bypass_alert(it->second, n);
    }
  }
  return {};
}

void Plane::send_desc(std::uint16_t to, const InspectDesc& d) {
  auto& q = outq_[to];
  if (q.empty() && to_[to].enqueue_burst(&d, 1) == 1) {
    if (auto where = ch_->doorbell_of(to)) {
      (void)rpc::notify(to_[to].consumer_sleeping(), ringer_, where->first, where->second);
    }
    return;
  }
  q.push_back(d);  // ring full: keep order, flushed by poll()
}

void Plane::flush_out(std::uint16_t to) {
  auto& q = outq_[to];
  if (q.empty()) return;
  std::uint32_t sent = 0;
  while (!q.empty() && to_[to].enqueue_burst(&q.front(), 1) == 1) {
    q.pop_front();
    ++sent;
  }
  if (sent != 0) {
    if (auto where = ch_->doorbell_of(to)) {
      (void)rpc::notify(to_[to].consumer_sleeping(), ringer_, where->first, where->second);
    }
  }
}

void Plane::dispatch(Stream& s, std::uint64_t token, Flight& f, std::size_t pos) {
  std::size_t last = pos;
  while (!s.path[index_at(s, f.dir, last)].group && last + 1 < s.path.size()) ++last;
  const PathStep& first = s.path[index_at(s, f.dir, pos)];
  const PathStep& end = s.path[index_at(s, f.dir, last)];
  f.first_step = first.step;
  f.last_step = end.step;
  f.expect = 0;
  for (std::uint16_t n : end.nodes) f.expect |= bit(n);
  f.got = 0;
  f.handoff_ns = rpc::monotonic_ns();
  f.deadline_ns = f.handoff_ns + s.step_deadline_ns * (last - pos + 1);
  // Every SVM of the segment sees the payload (hand-offs: a re-dispatch after a bypass counts
  // again, as the SVM is handed the payload again).
  for (std::size_t p = pos; p <= last; ++p) {
    for (std::uint16_t n : s.path[index_at(s, f.dir, p)].nodes) {
      ++node_stats_[n].payloads;
      node_stats_[n].bytes += f.length;
    }
  }
  InspectDesc d{};
  d.stream_id = f.stream_id;
  d.stream_offset = f.stream_offset;
  d.token = token;
  d.chunk = f.chunk;
  d.offset = 0;
  d.length = f.length;
  d.seq = f.seq;
  d.kind = InspectKind::kPayload;
  d.direction = f.dir;
  d.step = first.step;
  d.from_node = rpc::kToeNode;
  for (std::uint16_t n : first.nodes) send_desc(n, d);
}

void Plane::pass_flight(Stream& s, std::uint64_t token, Flight& f) {
  f.passed = true;
  s.passed[f.dir][f.seq] = token;
  deliver_pending_.push_back(f.stream_id);
}

rpc::Result<std::uint64_t> Plane::submit(std::uint64_t stream_id, Direction dir,
                                         std::span<const std::byte> bytes) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) {
    return rpc::Error{ENOENT, "inspection plane: unknown stream " + std::to_string(stream_id)};
  }
  Stream& s = it->second;
  if (s.blocked) {
    ++stats_.dropped_payloads;
    return rpc::Error{ECONNRESET,
                      "inspection plane: stream " + std::to_string(stream_id) + " is blocked"};
  }
  if (s.closing) {
    return rpc::Error{EPIPE,
                      "inspection plane: stream " + std::to_string(stream_id) + " is closing"};
  }
  if (bytes.size() > ch_->pool().chunk_size()) {
    return rpc::Error{EMSGSIZE, "inspection plane: payload of " + std::to_string(bytes.size()) +
                                    " bytes exceeds the chunk size " +
                                    std::to_string(ch_->pool().chunk_size())};
  }
  auto chunk = alloc_.allocate();
  if (!chunk) return chunk.error();  // ENOBUFS: backpressure
  std::memcpy(ch_->pool().chunk(*chunk).data(), bytes.data(), bytes.size());
  const std::uint8_t d = dir == Direction::kOutbound ? 0 : 1;
  const std::uint64_t token = ++next_token_;
  Flight& f = flights_[token];
  f.stream_id = stream_id;
  f.dir = d;
  f.chunk = *chunk;
  f.length = static_cast<std::uint32_t>(bytes.size());
  f.stream_offset = s.next_offset[d];
  f.seq = s.next_seq[d]++;
  s.next_offset[d] += bytes.size();
  ++s.inflight;
  ++stats_.submitted;
  if (s.path.empty()) {
    pass_flight(s, token, f);  // every step bypassed (fail-open) or an empty chain
  } else {
    dispatch(s, token, f, 0);
  }
  return token;
}

std::vector<SvmStepStats> Plane::svm_stats() const {
  std::vector<SvmStepStats> out;
  for (const auto& s : opt_.svms) {
    if (s.node < node_stats_.size()) out.push_back(node_stats_[s.node]);
  }
  return out;
}

std::vector<RingStats> Plane::ring_stats() {
  // The TOE's own rings of the mesh: payloads to each SVM (producer end: capacity minus free
  // slots) and verdicts from it (consumer end: ready slots). SVM-to-SVM hand-off rings belong to
  // their SVMs, which report them.
  std::vector<RingStats> out;
  for (const auto& s : opt_.svms) {
    const std::uint16_t j = s.node;
    if (j >= to_.size()) continue;
    const std::uint32_t cap = to_[j].capacity();
    out.push_back({"inspect.0-" + std::to_string(j), cap, cap - std::min(cap, to_[j].free_slots()),
                   static_cast<std::uint32_t>(outq_[j].size())});
    out.push_back(
        {"inspect." + std::to_string(j) + "-0", from_[j].capacity(), from_[j].available(), 0});
  }
  return out;
}

rpc::Status Plane::close_stream(std::uint64_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) {
    return rpc::Error{ENOENT, "inspection plane: unknown stream " + std::to_string(stream_id)};
  }
  it->second.closing = true;
  if (it->second.inflight == 0) finish_stream(stream_id);
  return {};
}

void Plane::finish_stream(std::uint64_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  const Stream& s = it->second;
  for (const PathStep& ps : s.path) {
    InspectDesc d{};
    d.stream_id = id;
    d.kind = InspectKind::kStreamEnd;
    d.step = ps.step;
    d.from_node = rpc::kToeNode;
    for (std::uint16_t n : ps.nodes) send_desc(n, d);
  }
  streams_.erase(it);
}

void Plane::block_stream(Stream& s, BlockInfo info) {
  if (s.blocked) return;
  s.blocked = true;
  ++stats_.blocked_streams;
  // Payloads that the whole chain passed and that are next in stream order were checked before
  // the block: they are still delivered (by poll(), before on_block). Everything else is dropped.
  std::vector<std::uint64_t> keep;
  for (std::uint8_t dir = 0; dir < 2; ++dir) {
    std::map<std::uint32_t, std::uint64_t> ready;
    for (std::uint32_t seq = s.deliver_seq[dir];; ++seq) {
      auto p = s.passed[dir].find(seq);
      if (p == s.passed[dir].end()) break;
      ready.insert(*p);
      keep.push_back(p->second);
    }
    s.passed[dir] = std::move(ready);
  }
  for (auto it = flights_.begin(); it != flights_.end();) {
    if (it->second.stream_id == s.info.stream_id &&
        std::find(keep.begin(), keep.end(), it->first) == keep.end()) {
      quarantine(s, it->second.chunk);
      ++stats_.dropped_payloads;
      it = flights_.erase(it);
    } else {
      ++it;
    }
  }
  s.inflight = static_cast<std::uint32_t>(keep.size());
  info.stream_id = s.info.stream_id;
  block_events_.push_back(std::move(info));
  if (keep.empty()) {
    if (s.closing) finish_stream(s.info.stream_id);
  } else {
    deliver_pending_.push_back(s.info.stream_id);
  }
}

void Plane::drain_up(std::uint16_t node) {
  tosec::v1::ControlMessage m;
  for (;;) {
    auto st = ctl_up_[node]->receive(m);
    if (!st) {
      if (st.code() == EAGAIN || st.code() == EPROTO) break;
      continue;
    }
    if (m.has_alert()) last_alert_[m.alert().stream_id()] = m.alert();
  }
}

void Plane::on_verdict(const InspectDesc& d, std::uint16_t from) {
  if (auto why = rpc::validate_inspect_desc(d, from, ch_->pool(), kMaxSteps);
      !why.empty() || d.kind == InspectKind::kPayload) {
    ++stats_.bad_descriptors;
    last_error_ = "inspection plane: bad verdict from node " + std::to_string(from) + ": " +
                  (why.empty() ? std::string("payload descriptor sent to the TOE") : why);
    return;
  }
  const bool blocks = d.action == InspectAction::kBlock;
  auto describe = [&](BlockInfo& b) {
    b.svm = svm_name(from);
    b.reason = "blocked by svm " + b.svm + " (step " + std::to_string(d.step) + "): ";
    const auto why = static_cast<InspectReason>(d.reason);
    if (why == InspectReason::kEngine) {
      drain_up(from);  // the SVM wrote its finding there before the verdict
      if (auto a = last_alert_.find(d.stream_id); a != last_alert_.end()) {
        b.rule_id = a->second.rule();
        b.message = a->second.message();
        last_alert_.erase(a);
      }
      b.reason += b.rule_id.empty() ? "engine verdict" : b.rule_id + " " + b.message;
    } else {
      b.reason += std::string(rpc::to_string(why));
    }
  };
  if (d.kind == InspectKind::kStreamEnd) {  // finish() found something
    if (!blocks) return;
    BlockInfo b;
    describe(b);
    if (auto it = streams_.find(d.stream_id); it != streams_.end()) {
      block_stream(it->second, std::move(b));
    } else {
      b.stream_id = d.stream_id;
      ++stats_.blocked_streams;
      block_events_.push_back(std::move(b));
    }
    return;
  }
  auto fit = flights_.find(d.token);
  if (fit == flights_.end() || fit->second.stream_id != d.stream_id || fit->second.passed) {
    ++stats_.stale_verdicts;
    return;
  }
  Flight& f = fit->second;
  auto sit = streams_.find(f.stream_id);
  if (sit == streams_.end()) {
    ++stats_.stale_verdicts;
    return;
  }
  Stream& s = sit->second;
  if (blocks) {
    if ((s.mask & bit(from)) == 0 && (s.chain->mask & bit(from)) == 0) {
      ++stats_.stale_verdicts;
      return;
    }
    SvmStepStats& ns = node_stats_[from];
    ++ns.block;
    const std::uint64_t now = rpc::monotonic_ns();
    ns.latency.record(now - std::min(now, f.handoff_ns));
    BlockInfo b;
    describe(b);
    block_stream(s, std::move(b));
    return;
  }
  if (d.step != f.last_step || (f.expect & bit(from)) == 0 || (f.got & bit(from)) != 0) {
    ++stats_.stale_verdicts;
    return;
  }
  f.got |= bit(from);
  {
    SvmStepStats& ns = node_stats_[from];
    ++ns.pass;  // alerting engines pass (their alerts go to the SVM's alert log, not here)
    const std::uint64_t now = rpc::monotonic_ns();
    ns.latency.record(now - std::min(now, f.handoff_ns));
  }
  if (f.got != f.expect) return;
  auto pos = pos_of(s, f.dir, f.last_step);
  if (!pos) {  // the step left the path meanwhile; check_deadlines re-dispatches
    ++stats_.stale_verdicts;
    return;
  }
  if (s.path[index_at(s, f.dir, *pos)].group) ++stats_.group_joins;
  if (*pos + 1 < s.path.size()) {
    dispatch(s, d.token, f, *pos + 1);
  } else {
    pass_flight(s, d.token, f);
  }
}

void Plane::write_bypass_alert(const Stream& s, std::uint16_t node) {
  if (opt_.alerts == nullptr) return;
  const std::string name = svm_name(node);
  const std::string engine = svm_engine(node);
  AlertRecord r;
  r.stream = &s.info;
  r.direction = Direction::kOutbound;
  r.svm = name;
  r.engine = engine;
  r.blocked = false;
  r.rule_id = "tosec:svm-down";
  r.signature = "svm down: bypass";
  r.category = "fail-open";
  opt_.alerts->write(r);
}

void Plane::bypass(Stream& s, std::uint16_t node, const std::string& why) {
  // Flights whose current segment reaches the node start that segment again on the new path;
  // SVMs skip bytes they inspected already, so engines still see each byte once.
  std::vector<std::uint64_t> affected;
  for (auto& [token, f] : flights_) {
    if (f.stream_id != s.info.stream_id || f.passed) continue;
    auto a = pos_of(s, f.dir, f.first_step);
    auto b = pos_of(s, f.dir, f.last_step);
    if (!a || !b) continue;
    for (std::size_t p = *a; p <= *b; ++p) {
      const auto& nodes = s.path[index_at(s, f.dir, p)].nodes;
      if (std::find(nodes.begin(), nodes.end(), node) != nodes.end()) {
        affected.push_back(token);
        break;
      }
    }
  }
  for (auto& ps : s.path) std::erase(ps.nodes, node);
  std::erase_if(s.path, [](const PathStep& ps) { return ps.nodes.empty(); });
  s.mask &= ~bit(node);
  s.bypassed |= bit(node);
  ++stats_.bypasses;
  write_bypass_alert(s, node);
  if (auto st = send_routes(s); !st) last_error_ = "bypass of " + why + ": " + st.message();
  for (std::uint64_t token : affected) {
    Flight& f = flights_[token];
    std::optional<std::size_t> start;
    for (std::size_t p = 0; p < s.path.size(); ++p) {
      const std::uint8_t st = s.path[index_at(s, f.dir, p)].step;
      if (f.dir == 0 ? st >= f.first_step : st <= f.first_step) {
        start = p;
        break;
      }
    }
    if (start) {
      dispatch(s, token, f, *start);
    } else {
      pass_flight(s, token, f);
    }
  }
}

void Plane::mark_down(std::uint16_t node, const std::string& why) {
  if (node == rpc::kToeNode || node >= down_.size() || down_[node]) return;
  down_[node] = true;
  const rpc::NodeSlot* slot = ch_->node(node);
  down_inc_[node] = slot->incarnation.load(std::memory_order_acquire);
  ++stats_.svm_down_events;
  const std::string name = svm_name(node);
  last_error_ = "svm " + name + " down: " + why;
  std::vector<std::uint64_t> ids;
  for (auto& [id, s] : streams_) {
    if ((s.mask & bit(node)) != 0 && !s.blocked) ids.push_back(id);
  }
  for (std::uint64_t id : ids) {
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    if (it->second.fail_open) {
      bypass(it->second, node, "svm " + name + " (" + why + ")");
    } else {
      BlockInfo b;
      b.svm = name;
      b.reason = "svm " + name + " down (" + why + ")";
      block_stream(it->second, std::move(b));
    }
  }
}

void Plane::node_departed(rpc::PeerId peer) {
  for (std::uint16_t n = 1; n < down_.size(); ++n) {
    const rpc::NodeSlot* slot = ch_->node(n);
    if (seen_inc_[n] == 0) continue;
    if (static_cast<rpc::PeerId>(slot->doorbell.load(std::memory_order_relaxed) >> 16) == peer) {
      mark_down(n, "ivshmem peer " + std::to_string(peer) + " departed");
    }
  }
}

void Plane::check_nodes(std::uint64_t) {
  for (std::uint16_t n = 1; n < down_.size(); ++n) {
    const rpc::NodeSlot* slot = ch_->node(n);
    const auto state = slot->state.load(std::memory_order_acquire);
    const std::uint32_t inc = slot->incarnation.load(std::memory_order_relaxed);
    if (state == rpc::NodeState::kOnline) {
      if (down_[n]) {
        if (inc != down_inc_[n]) {  // a new incarnation: back, with empty stream state
          down_[n] = false;
          seen_inc_[n] = inc;
        }
      } else if (seen_inc_[n] != 0 && inc != seen_inc_[n]) {
        // Restarted faster than we noticed: its per-stream state is gone all the same.
        mark_down(n, "restarted");
        down_[n] = false;
        seen_inc_[n] = inc;
      } else {
        seen_inc_[n] = inc;
      }
    } else if (seen_inc_[n] != 0 && !down_[n]) {
      mark_down(n, "left");
    }
  }
}

void Plane::check_deadlines(std::uint64_t now) {
  std::vector<std::uint64_t> late;
  for (const auto& [token, f] : flights_) {
    if (!f.passed && now > f.deadline_ns) late.push_back(token);
  }
  for (std::uint64_t token : late) {
    auto fit = flights_.find(token);
    if (fit == flights_.end() || fit->second.passed || now <= fit->second.deadline_ns) continue;
    Flight& f = fit->second;
    auto sit = streams_.find(f.stream_id);
    if (sit == streams_.end()) continue;
    Stream& s = sit->second;
    ++stats_.deadline_misses;
    auto a = pos_of(s, f.dir, f.first_step);
    auto b = pos_of(s, f.dir, f.last_step);
    if (!a || !b) {  // its segment changed under it (bypass): start it again
      dispatch(s, token, f, 0);
      continue;
    }
    // Blame the first SVM of the segment that looks dead or stuck; else the one we wait for.
    std::optional<std::uint16_t> culprit;
    std::optional<std::uint16_t> fallback;
    for (std::size_t p = *a; p <= *b && !culprit; ++p) {
      for (std::uint16_t n : s.path[index_at(s, f.dir, p)].nodes) {
        if (p == *b && (f.got & bit(n)) != 0) continue;  // answered already
        if (!fallback) fallback = n;
        const rpc::NodeSlot* slot = ch_->node(n);
        const std::uint64_t hb = slot->heartbeat_ns.load(std::memory_order_relaxed);
        const std::uint64_t busy = slot->busy_since_ns.load(std::memory_order_relaxed);
        const bool stale = slot->state.load(std::memory_order_acquire) != rpc::NodeState::kOnline ||
                           now - std::min(now, hb) > s.step_deadline_ns ||
                           (busy != 0 && now - std::min(now, busy) > s.step_deadline_ns);
        if (stale || down_[n]) {
          culprit = n;
          break;
        }
      }
    }
    if (!culprit) culprit = fallback;
    if (!culprit) continue;
    if (down_[*culprit]) {
      // Already down (a bypass update raced with this payload): start the segment again.
      dispatch(s, token, f, *a);
      continue;
    }
    mark_down(*culprit, "missed the " + std::to_string(s.step_deadline_ns / 1000) + " us deadline");
  }
}

std::size_t Plane::poll(const PlaneCallbacks& cb) {
  std::size_t events = 0;
  const std::uint64_t now = rpc::monotonic_ns();
  if (!quarantine_.empty()) {
    std::erase_if(quarantine_, [&](const auto& q) {
      if (q.first > now) return false;
      release_chunk(q.second);
      return true;
    });
  }
  for (std::uint16_t j = 1; j < to_.size(); ++j) flush_out(j);
  for (std::uint16_t j = 1; j < from_.size(); ++j) {
    for (;;) {
      const std::uint32_t n = from_[j].dequeue_burst(buf_.data(), kBurst);
      for (std::uint32_t i = 0; i < n; ++i) on_verdict(buf_[i], j);
      events += n;
      if (n < kBurst) break;
    }
  }
  if (now - last_check_ns_ >= kCheckPeriodNs) {
    last_check_ns_ = now;
    check_nodes(now);
    check_deadlines(now);
  }
  // Deliver what the last step passed, in stream order.
  while (!deliver_pending_.empty()) {
    std::vector<std::uint64_t> ids;
    ids.swap(deliver_pending_);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (std::uint64_t id : ids) {
      for (std::uint8_t dir = 0; dir < 2; ++dir) {
        for (;;) {
          auto sit = streams_.find(id);
          if (sit == streams_.end()) break;  // a blocked stream keeps only pre-block passes
          Stream& s = sit->second;
          auto p = s.passed[dir].find(s.deliver_seq[dir]);
          if (p == s.passed[dir].end()) break;
          const std::uint64_t token = p->second;
          s.passed[dir].erase(p);
          ++s.deliver_seq[dir];
          auto fit = flights_.find(token);
          if (fit == flights_.end()) continue;
          const Flight f = fit->second;
          flights_.erase(fit);
          --s.inflight;
          ++stats_.delivered;
          ++events;
          if (cb.on_deliver) {
            cb.on_deliver(id, dir == 0 ? Direction::kOutbound : Direction::kInbound,
                          ch_->pool().chunk(f.chunk).first(f.length));
          }
          release_chunk(f.chunk);
        }
      }
      auto sit = streams_.find(id);
      if (sit != streams_.end() && sit->second.closing && sit->second.inflight == 0) {
        finish_stream(id);
      }
    }
  }
  while (!block_events_.empty()) {
    std::vector<BlockInfo> ev;
    ev.swap(block_events_);
    for (auto& b : ev) {
      ++events;
      if (cb.on_block) cb.on_block(b);
    }
  }
  return events;
}

bool Plane::prepare_sleep() {
  bool queued = false;
  for (const auto& q : outq_) queued = queued || !q.empty();
  if (queued || !deliver_pending_.empty() || !block_events_.empty()) return false;
  for (auto* f : sleeping_) f->store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (std::size_t j = 1; j < from_.size(); ++j) {
    if (from_[j].available() != 0) {
      after_wake();
      return false;
    }
  }
  return true;
}

void Plane::after_wake() {
  for (auto* f : sleeping_) f->store(0, std::memory_order_relaxed);
}

bool Plane::has_work() {
  // Queued output and pending deliveries are not checked: prepare_sleep() already refuses to
  // sleep on them, and a full ring must not turn the spin into a busy loop.
  for (std::size_t j = 1; j < from_.size(); ++j) {
    if (from_[j].available() != 0) return true;
  }
  return false;
}

rpc::Result<bool> Plane::wait(std::int64_t timeout_ns) {
  bool queued = false;
  for (const auto& q : outq_) queued = queued || !q.empty();
  if (queued || !deliver_pending_.empty() || !block_events_.empty()) return true;
  // Deadlines and node checks need poll() to run now and then even when nothing arrives.
  std::int64_t t = timeout_ns;
  if (!flights_.empty() || !quarantine_.empty()) {
    t = t < 0 ? 5'000'000 : std::min<std::int64_t>(t, 5'000'000);
  }
  auto ready = [this] {
    for (std::size_t j = 1; j < from_.size(); ++j) {
      if (from_[j].available() != 0) return true;
    }
    return false;
  };
  return waiter_.wait(std::span<std::atomic<std::uint32_t>* const>(sleeping_), ready, t);
}

}  // namespace

rpc::Result<std::unique_ptr<InspectionPlane>> InspectionPlane::create(
    std::span<std::byte> region, InspectionPlaneOptions options, rpc::DoorbellRinger& ringer,
    rpc::DoorbellWaiter& waiter, rpc::PeerId self_peer, rpc::Vector own_vector) {
  auto p = std::make_unique<Plane>(std::move(options), ringer, waiter, own_vector);
  if (auto s = p->init(region, self_peer, own_vector); !s) return s.error();
  return std::unique_ptr<InspectionPlane>(std::move(p));
}

}  // namespace tosec::svm
