// Test harness: one inspection region in this process, the InspectionPlane as node 0 and
// SvmRuntimes as nodes 1.. on their own threads, all sharing one set of eventfd doorbells
// (peer 0, vector = node). Real rings, real doorbells, real engines (literal) or test engines.
#pragma once

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_region.h"
#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/inspection_channel.h"
#include "tosec/svm/inspection_plane.h"
#include "tosec/svm/literal_engine.h"
#include "tosec/svm/runtime.h"

namespace tosec::svm::test {

inline std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

inline std::string temp_path(const std::string& stem) {
  static int n = 0;
  return "/tmp/tosec-svmrt-" + std::to_string(::getpid()) + "-" + std::to_string(++n) + "-" + stem;
}

inline std::unique_ptr<Engine> literal(const std::string& rules) {
  const std::string path = temp_path("rules");
  std::ofstream(path) << rules;
  auto e = make_literal_engine(EngineConfig{"t", path, {}});
  std::remove(path.c_str());
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().message);
  return e.ok() ? std::move(*e) : nullptr;
}

inline StreamInfo stream_info(std::uint64_t id, bool guest_is_client = true) {
  StreamInfo s;
  s.stream_id = id;
  s.guest = "g0";
  s.protocol = 6;
  s.guest_is_client = guest_is_client;
  s.local.family = AF_INET;
  s.local.addr[0] = 10;
  s.local.addr[3] = 2;
  s.local.port = static_cast<std::uint16_t>(40000 + id % 1000);
  s.remote.family = AF_INET;
  s.remote.addr[0] = 10;
  s.remote.addr[3] = 9;
  s.remote.port = 80;
  return s;
}

// Parses a JSON line into a protobuf Struct (a real JSON parser); fails the test if invalid.
inline google::protobuf::Struct parse_json(const std::string& line) {
  google::protobuf::Struct s;
  auto st = google::protobuf::util::JsonStringToMessage(line, &s);
  EXPECT_TRUE(st.ok()) << "not JSON: " << line;
  return s;
}

inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

struct SvmSpec {
  std::string name;
  std::uint16_t node;
};

class Harness {
 public:
  explicit Harness(std::vector<SvmSpec> svms, rpc::InspectionConfig cfg = small_config(),
                   AlertLog* alerts = nullptr, std::uint64_t deadline_us = 30'000'000)
      : svms_(std::move(svms)) {
    if (auto s = bells_.create_own(0, rpc::kMaxInspectionNodes); !s) ADD_FAILURE() << s.message();
    InspectionPlaneOptions o;
    o.region = cfg;
    for (const auto& s : svms_) o.svms.push_back({s.name, s.node, "literal"});
    o.default_deadline_us = deadline_us;
    o.alerts = alerts;
    region_ =
        std::make_unique<tosec::test::SharedBuffer>(rpc::inspection_region_layout(cfg).pow2_size());
    auto p = InspectionPlane::create(region_->bytes(), o, bells_, bells_, 0, 0);
    if (!p) {
      ADD_FAILURE() << p.error().message;
      return;
    }
    plane_ = std::move(*p);
    auto v = rpc::RegionView::attach(region_->bytes());
    EXPECT_TRUE(v.ok());
    view_.emplace(std::move(*v));
    auto ch = rpc::InspectionChannel::attach_svm(*view_);
    EXPECT_TRUE(ch.ok()) << (ch.ok() ? "" : ch.error().message);
    ch_.emplace(std::move(*ch));
  }
  ~Harness() {
    for (auto& [n, r] : running_) stop_svm(n, false);
  }

  static rpc::InspectionConfig small_config() {
    rpc::InspectionConfig c;
    c.nodes = 5;
    c.ring_slots = 256;
    c.chunk_size = 4096;
    c.chunks = 256;
    c.control_bytes = 65536;
    return c;
  }

  InspectionPlane& plane() { return *plane_; }
  const rpc::InspectionChannel& channel() { return *ch_; }
  rpc::EventfdDoorbells& bells() { return bells_; }

  // Starts an SVM on `node` with `engine` (kept alive by the harness).
  SvmRuntime& start_svm(std::uint16_t node, std::unique_ptr<Engine> engine,
                        InspectMode mode = InspectMode::kPrevent, unsigned workers = 0,
                        AlertLog* alerts = nullptr) {
    Running& r = running_[node];
    r.engine = std::move(engine);
    SvmRuntimeOptions o;
    o.node = node;
    o.name = name_of(node);
    o.workers = workers;
    o.mode = mode;
    o.alerts = alerts;
    auto rt = SvmRuntime::create(*ch_, *r.engine, bells_, bells_, 0, node, o);
    EXPECT_TRUE(rt.ok()) << (rt.ok() ? "" : rt.error().message);
    r.rt = std::move(*rt);
    r.thread = std::thread([rt = r.rt.get()] {
      auto s = rt->run();
      EXPECT_TRUE(s.ok()) << s.message();
    });
    while (!r.rt->running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return *r.rt;
  }
  void stop_svm(std::uint16_t node, bool erase = true) {
    auto it = running_.find(node);
    if (it == running_.end() || !it->second.rt) return;
    it->second.rt->stop();
    if (it->second.thread.joinable()) it->second.thread.join();
    if (erase) running_.erase(it);
  }
  SvmRuntime& svm(std::uint16_t node) { return *running_.at(node).rt; }

  std::string name_of(std::uint16_t node) const {
    for (const auto& s : svms_) {
      if (s.node == node) return s.name;
    }
    return "?";
  }

  // Polls until pred() or 20 s (then fails).
  template <class Pred>
  bool pump(Pred pred) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > until) {
        ADD_FAILURE() << "timed out; plane: " << plane_->last_error();
        return false;
      }
      plane_->poll(callbacks_);
      if (pred()) break;
      (void)plane_->wait(1'000'000);
    }
    return true;
  }
  void poll() { plane_->poll(callbacks_); }

  // What was delivered, per stream and direction, and every block.
  std::map<std::uint64_t, std::string> delivered[2];
  std::vector<BlockInfo> blocks;
  std::size_t deliveries = 0;
  bool blocked(std::uint64_t id) const {
    for (const auto& b : blocks) {
      if (b.stream_id == id) return true;
    }
    return false;
  }
  // The block of stream `id` (an empty BlockInfo if none).
  BlockInfo block_of(std::uint64_t id) const {
    for (const auto& b : blocks) {
      if (b.stream_id == id) return b;
    }
    return {};
  }

  // Submits, polling while the pool is full (ENOBUFS = backpressure).
  rpc::Result<std::uint64_t> submit(std::uint64_t id, Direction d, const std::string& bytes) {
    for (;;) {
      auto t = plane_->submit(id, d, as_bytes(bytes));
      if (t || t.error().code != ENOBUFS) return t;
      poll();
      (void)plane_->wait(1'000'000);
    }
  }

 private:
  struct Running {
    std::unique_ptr<Engine> engine;
    std::unique_ptr<SvmRuntime> rt;
    std::thread thread;
  };
  std::vector<SvmSpec> svms_;
  rpc::EventfdDoorbells bells_;
  std::unique_ptr<tosec::test::SharedBuffer> region_;
  std::optional<rpc::RegionView> view_;
  std::optional<rpc::InspectionChannel> ch_;
  std::unique_ptr<InspectionPlane> plane_;
  std::map<std::uint16_t, Running> running_;
  PlaneCallbacks callbacks_{[this](std::uint64_t s, Direction d, std::span<const std::byte> b) {
                              delivered[d == Direction::kOutbound ? 0 : 1][s].append(
                                  reinterpret_cast<const char*>(b.data()), b.size());
                              ++deliveries;
                            },
                            [this](const BlockInfo& b) { blocks.push_back(b); }};
};

// Chain helpers.
inline tosec::v1::ChainUpdate chains(
    std::vector<std::tuple<std::uint32_t, std::vector<std::vector<std::string>>, bool>> defs,
    std::uint64_t deadline_us = 0) {
  tosec::v1::ChainUpdate u;
  for (auto& [id, steps, fail_open] : defs) {
    auto* c = u.add_upsert();
    c->set_id(id);
    c->set_name("chain" + std::to_string(id));
    c->set_fail_policy(fail_open ? tosec::v1::FAIL_POLICY_FAIL_OPEN
                                 : tosec::v1::FAIL_POLICY_FAIL_CLOSED);
    c->set_deadline_us(deadline_us);
    for (auto& st : steps) {
      auto* s = c->add_steps();
      if (st.size() == 1 && st[0][0] != '+') {
        s->set_svm(st[0]);
      } else {
        for (auto& n : st) s->mutable_parallel()->add_svms(n[0] == '+' ? n.substr(1) : n);
      }
    }
  }
  return u;
}

}  // namespace tosec::svm::test
