// The SVM runtime: manager thread + workers (see runtime.h for the contract).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "tosec/rpc/control_channel.h"
#include "tosec/svm/runtime.h"
#include "tosec/svm/stream_table.h"

namespace tosec::svm {

namespace {

using rpc::InspectAction;
using rpc::InspectDesc;
using rpc::InspectKind;
using rpc::InspectReason;

constexpr std::uint32_t kMaxSteps = 64;  // steps a chain may have (descriptor step is a byte)
constexpr std::uint32_t kBurst = 64;

struct WorkItem {
  InspectDesc desc;
  std::shared_ptr<const StreamRoute> route;  // null for the stream end of an unknown stream
};

// One output ring ring[self][to]. Several workers produce into it: the mutex keeps one producer
// at a time, so the ring stays single-producer.
struct OutRing {
  std::mutex mu;
  rpc::SpscRing ring;
  std::uint16_t to = 0;
  bool present = false;
};

struct InRing {
  rpc::SpscRing ring;
  std::uint16_t from = 0;
};

class Runtime final : public SvmRuntime {
 public:
  Runtime(const rpc::InspectionChannel& ch, Engine& engine, rpc::DoorbellRinger& ringer,
          rpc::DoorbellWaiter& waiter, rpc::PeerId peer, rpc::Vector vector, SvmRuntimeOptions o)
      : ch_(ch),
        engine_(engine),
        ringer_(ringer),
        waiter_(waiter, vector, o.spin),
        peer_(peer),
        vector_(vector),
        opt_(std::move(o)),
        table_(ch.nodes()),
        outs_(ch.nodes()) {}

  rpc::Status init() {
    const auto self = opt_.node;
    for (std::uint16_t j = 0; j < ch_.nodes(); ++j) {
      if (j == self) continue;
      auto in = ch_.ring(j, self, rpc::RingEnd::kConsumer);
      if (!in) return in.error();
      ins_.push_back(InRing{std::move(*in), j});
      auto out = ch_.ring(self, j, rpc::RingEnd::kProducer);
      if (!out) return out.error();
      outs_[j].ring = std::move(*out);
      outs_[j].to = j;
      outs_[j].present = true;
    }
    for (auto& in : ins_) sleeping_.push_back(&in.ring.consumer_sleeping());
    auto down = ch_.control(self, true);
    if (!down) return down.error();
    ctl_down_.emplace(std::move(*down));
    auto up = ch_.control(self, false);
    if (!up) return up.error();
    ctl_up_.emplace(std::move(*up));
    return {};
  }

  rpc::Status run() override;
  void stop() override {
    stop_.store(true, std::memory_order_release);
    (void)ringer_.ring(peer_, vector_);  // wake the manager if it sleeps
    for (auto& w : workers_) {
      std::lock_guard lk(w->mu);
      w->cv.notify_all();
    }
  }
  bool running() const override { return running_.load(std::memory_order_acquire); }
  const SvmCounters& counters() const override { return c_; }
  tosec::v1::SvmStats stats() const override;
  std::string last_error() const override {
    std::lock_guard lk(err_mu_);
    return last_error_;
  }

 private:
  struct StreamState {
    std::unique_ptr<StreamInspector> inspector;
    bool blocked = false;
    bool opened = false;
    std::uint64_t next_offset[2] = {0, 0};
  };
  struct Worker {
    std::thread thread;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<WorkItem> queue;
    std::atomic<std::uint64_t> busy_since{0};
  };

  void note_error(std::string e) {
    std::lock_guard lk(err_mu_);
    last_error_ = std::move(e);
  }
  std::size_t drain_control();
  void handle(const InspectDesc& d, std::uint16_t from);
  void dispatch(WorkItem item);
  void worker_loop(Worker& w);
  void process_payload(std::unordered_map<std::uint64_t, StreamState>& streams,
                       EngineThread* thread, const WorkItem& item);
  void process_end(std::unordered_map<std::uint64_t, StreamState>& streams, const WorkItem& item);
  // Logs every finding; returns whether the verdict blocks (after the detect-mode downgrade).
  bool report(const Verdict& v, const StreamInfo& info, Direction dir);
  void send(std::uint16_t to, const InspectDesc& d);
  void send_verdict(const InspectDesc& in, InspectAction a, InspectReason why, std::uint8_t step,
                    InspectKind kind = InspectKind::kVerdict);
  void send_alert_up(const StreamInfo& info, Direction dir, const Finding& f);

  const rpc::InspectionChannel& ch_;
  Engine& engine_;
  rpc::DoorbellRinger& ringer_;
  rpc::Waiter waiter_;
  rpc::PeerId peer_;
  rpc::Vector vector_;
  SvmRuntimeOptions opt_;
  StreamTable table_;
  std::vector<InRing> ins_;
  std::vector<OutRing> outs_;
  std::vector<std::atomic<std::uint32_t>*> sleeping_;
  std::optional<rpc::ControlChannel> ctl_down_;
  std::optional<rpc::ControlChannel> ctl_up_;
  std::mutex ctl_up_mu_;
  std::vector<std::unique_ptr<Worker>> workers_;  // empty: inline mode (workers = 0)
  std::unique_ptr<EngineThread> inline_thread_;   // inline mode: the manager's engine thread
  std::unordered_map<std::uint64_t, StreamState> inline_streams_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};
  SvmCounters c_;
  mutable std::mutex err_mu_;
  std::string last_error_;
  tosec::v1::ControlMessage msg_;
  std::uint64_t ctl_seq_ = 0;
};

rpc::Status Runtime::run() {
  if (opt_.workers == 0) {
    // Inline: the manager inspects what it dequeues. No hand-off to a worker thread, so no
    // futex wake-up per payload: on 2 vCPUs that wake-up cost more than the inspection.
    auto made = engine_.make_thread();
    if (made) {
      inline_thread_ = std::move(*made);
    } else {
      note_error("svm " + opt_.name + ": engine thread: " + made.error().message);
    }
  }
  for (unsigned i = 0; i < opt_.workers; ++i) workers_.push_back(std::make_unique<Worker>());
  for (auto& w : workers_) w->thread = std::thread([this, wp = w.get()] { worker_loop(*wp); });
  rpc::NodeSlot* slot = ch_.node(opt_.node);
  ch_.announce(opt_.node, peer_, vector_, opt_.name);
  running_.store(true, std::memory_order_release);

  rpc::Status result;
  std::vector<InspectDesc> buf(kBurst);
  while (!stop_.load(std::memory_order_acquire)) {
    const std::uint64_t now = rpc::monotonic_ns();
    slot->heartbeat_ns.store(now, std::memory_order_relaxed);
    std::uint64_t busy = 0;
    for (auto& w : workers_) {
      const std::uint64_t b = w->busy_since.load(std::memory_order_relaxed);
      if (b != 0 && (busy == 0 || b < busy)) busy = b;
    }
    slot->busy_since_ns.store(busy, std::memory_order_relaxed);

    std::size_t work = drain_control();
    for (auto& in : ins_) {
      const std::uint32_t n = in.ring.dequeue_burst(buf.data(), kBurst);
      for (std::uint32_t i = 0; i < n; ++i) handle(buf[i], in.from);
      work += n;
      if (in.ring.broken()) {
        result = rpc::Error{EPROTO, "svm " + opt_.name + ": " + in.ring.error()};
        stop_.store(true);
      }
    }
    if (work != 0) continue;
    auto ready = [this] {
      if (stop_.load(std::memory_order_relaxed)) return true;
      for (auto& in : ins_) {
        if (in.ring.available() != 0) return true;
      }
      return ctl_down_->ring().backlog_bytes() != 0;
    };
    auto w = waiter_.wait(std::span<std::atomic<std::uint32_t>* const>(sleeping_), ready,
                          opt_.heartbeat_ns);
    if (!w) {
      result = w.error();
      break;
    }
  }
  ch_.retire(opt_.node);
  stop_.store(true, std::memory_order_release);
  for (auto& w : workers_) {
    {
      std::lock_guard lk(w->mu);
      w->cv.notify_all();
    }
    if (w->thread.joinable()) w->thread.join();
  }
  running_.store(false, std::memory_order_release);
  return result;
}

std::size_t Runtime::drain_control() {
  std::size_t n = 0;
  for (;;) {
    auto s = ctl_down_->receive(msg_);
    if (!s) {
      if (s.code() == EAGAIN) break;
      c_.control_errors.fetch_add(1, std::memory_order_relaxed);
      note_error("svm " + opt_.name + ": control: " + s.message());
      if (s.code() == EPROTO) break;  // ring broken for good
      continue;
    }
    ++n;
    if (msg_.has_stream_table_update()) {
      std::string why;
      if (table_.apply(msg_.stream_table_update(), &why) != 0) {
        c_.control_errors.fetch_add(1, std::memory_order_relaxed);
        note_error("svm " + opt_.name + ": stream table update: " + why);
      }
    }
    // ChainUpdate is not needed here: stream entries carry this SVM's next hops.
  }
  return n;
}

void Runtime::handle(const InspectDesc& d, std::uint16_t from) {
  if (auto why = rpc::validate_inspect_desc(d, from, ch_.pool(), kMaxSteps); !why.empty()) {
    c_.bad_descriptors.fetch_add(1, std::memory_order_relaxed);
    note_error("svm " + opt_.name + ": bad descriptor from node " + std::to_string(from) + ": " +
               why);
    return;
  }
  if (d.kind == InspectKind::kVerdict || (d.kind == InspectKind::kStreamEnd && from != 0)) {
    c_.bad_descriptors.fetch_add(1, std::memory_order_relaxed);
    note_error("svm " + opt_.name + ": descriptor kind " +
               std::to_string(static_cast<unsigned>(d.kind)) + " from node " +
               std::to_string(from) + " is not for an SVM");
    return;
  }
  auto route = table_.find(d.stream_id);
  if (d.kind == InspectKind::kStreamEnd) {
    table_.erase(d.stream_id);
    dispatch(WorkItem{d, std::move(route)});
    return;
  }
  if (!route) {
    // The TOE publishes the entry before the first payload: it may still sit in our control ring.
    drain_control();
    route = table_.find(d.stream_id);
  }
  if (!route) {
    c_.unknown_streams.fetch_add(1, std::memory_order_relaxed);
    note_error("svm " + opt_.name + ": payload for unknown stream " + std::to_string(d.stream_id) +
               ": dropped, block verdict sent");
    send_verdict(d, InspectAction::kBlock, InspectReason::kUnknownStream, d.step);
    return;
  }
  if (d.step != route->step) {
    c_.bad_descriptors.fetch_add(1, std::memory_order_relaxed);
    note_error("svm " + opt_.name + ": stream " + std::to_string(d.stream_id) + ": step " +
               std::to_string(d.step) + " but this SVM is step " + std::to_string(route->step));
    send_verdict(d, InspectAction::kBlock, InspectReason::kBadPayload, d.step);
    return;
  }
  dispatch(WorkItem{d, std::move(route)});
}

void Runtime::dispatch(WorkItem item) {
  if (workers_.empty()) {  // inline mode (workers = 0): the busy mark stands in for a worker's
    rpc::NodeSlot* slot = ch_.node(opt_.node);
    slot->busy_since_ns.store(rpc::monotonic_ns(), std::memory_order_relaxed);
    if (item.desc.kind == InspectKind::kPayload) {
      process_payload(inline_streams_, inline_thread_.get(), item);
    } else {
      process_end(inline_streams_, item);
    }
    slot->busy_since_ns.store(0, std::memory_order_relaxed);
    return;
  }
  Worker& w = *workers_[item.desc.stream_id % workers_.size()];
  {
    std::lock_guard lk(w.mu);
    w.queue.push_back(std::move(item));
  }
  w.cv.notify_one();
}

void Runtime::worker_loop(Worker& w) {
  auto made = engine_.make_thread();
  std::unique_ptr<EngineThread> thread;
  if (made) {
    thread = std::move(*made);
  } else {
    note_error("svm " + opt_.name + ": engine thread: " + made.error().message);
  }
  std::unordered_map<std::uint64_t, StreamState> streams;
  std::deque<WorkItem> batch;
  for (;;) {
    {
      std::unique_lock lk(w.mu);
      w.cv.wait(lk, [&] { return !w.queue.empty() || stop_.load(std::memory_order_acquire); });
      if (w.queue.empty()) return;  // stopping
      batch.swap(w.queue);
    }
    for (const WorkItem& item : batch) {
      w.busy_since.store(rpc::monotonic_ns(), std::memory_order_relaxed);
      if (item.desc.kind == InspectKind::kPayload) {
        process_payload(streams, thread.get(), item);
      } else {
        process_end(streams, item);
      }
      w.busy_since.store(0, std::memory_order_relaxed);
    }
    batch.clear();
  }
}

void Runtime::process_payload(std::unordered_map<std::uint64_t, StreamState>& streams,
                              EngineThread* thread, const WorkItem& item) {
  const InspectDesc& d = item.desc;
  const StreamRoute& route = *item.route;
  const Direction dir = d.direction == 0 ? Direction::kOutbound : Direction::kInbound;
  StreamState& st = streams[d.stream_id];
  if (st.blocked) {
    send_verdict(d, InspectAction::kBlock, InspectReason::kEngine, route.step);
    return;
  }
  if (!st.opened) {
    st.opened = true;
    c_.streams_total.fetch_add(1, std::memory_order_relaxed);
    if (thread != nullptr) st.inspector = thread->open_stream(route.info);
  }
  if (!st.inspector) {
    st.blocked = true;
    send_verdict(d, InspectAction::kBlock, InspectReason::kEngineError, route.step);
    return;
  }
  const std::size_t di = d.direction;
  const std::uint64_t end = d.stream_offset + d.length;
  std::uint64_t offset = d.stream_offset;
  // The chunk reference was validated by the manager (validate_inspect_desc).
  std::span<const std::byte> bytes = ch_.pool().chunk(d.chunk).subspan(d.offset, d.length);
  if (end <= st.next_offset[di] && d.length != 0) {
    // Re-dispatched after a fail-open bypass: inspected already and passed (else the stream
    // would be blocked). Engines see each byte once.
    c_.duplicates.fetch_add(1, std::memory_order_relaxed);
    bytes = {};
  } else if (offset < st.next_offset[di]) {
    bytes = bytes.subspan(st.next_offset[di] - offset);
    offset = st.next_offset[di];
  }
  if (!bytes.empty() || d.length == 0) {
    Payload p{dir, route.info.flow_of(dir), offset, bytes};
    const Verdict v = st.inspector->inspect(p);
    st.next_offset[di] = end;
    c_.payloads.fetch_add(1, std::memory_order_relaxed);
    c_.bytes.fetch_add(bytes.size(), std::memory_order_relaxed);
    if (report(v, route.info, dir)) {
      st.blocked = true;
      st.inspector.reset();
      for (const Finding& f : v.findings) {
        if (f.action == Action::kBlock) {
          send_alert_up(route.info, dir, f);
          break;
        }
      }
      send_verdict(d, InspectAction::kBlock, InspectReason::kEngine, route.step);
      return;
    }
  }
  const Hop& next = route.next(dir);
  if (next.kind == Hop::Kind::kSvm) {
    InspectDesc f = d;
    f.from_node = opt_.node;
    f.step = next.step;
    for (std::uint16_t n : next.nodes) {
      send(n, f);
      c_.forwards.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  send_verdict(d, InspectAction::kPass, InspectReason::kNone, route.step);
}

void Runtime::process_end(std::unordered_map<std::uint64_t, StreamState>& streams,
                          const WorkItem& item) {
  auto it = streams.find(item.desc.stream_id);
  if (it == streams.end()) return;
  StreamState& st = it->second;
  if (st.inspector && !st.blocked && item.route) {
    const Verdict v = st.inspector->finish();
    const Direction dir = item.desc.direction == 0 ? Direction::kOutbound : Direction::kInbound;
    if (report(v, item.route->info, dir)) {
      for (const Finding& f : v.findings) {
        if (f.action == Action::kBlock) {
          send_alert_up(item.route->info, dir, f);
          break;
        }
      }
      send_verdict(item.desc, InspectAction::kBlock, InspectReason::kEngine, item.route->step,
                   InspectKind::kStreamEnd);
    }
  }
  streams.erase(it);
}

bool Runtime::report(const Verdict& v, const StreamInfo& info, Direction dir) {
  const bool prevent = opt_.mode == InspectMode::kPrevent;
  if (v.action == Action::kPass) {
    c_.verdict_pass.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const bool blocks = v.action == Action::kBlock && prevent;
  (blocks ? c_.verdict_block : c_.verdict_log).fetch_add(1, std::memory_order_relaxed);
  for (const Finding& f : v.findings) {
    if (f.action == Action::kPass) continue;
    c_.alerts.fetch_add(1, std::memory_order_relaxed);
    if (opt_.alerts == nullptr) continue;
    AlertRecord r;
    r.stream = &info;
    r.direction = dir;
    r.svm = opt_.name;
    r.engine = engine_.kind();
    r.blocked = f.action == Action::kBlock && prevent;
    r.rule_id = f.rule_id;
    r.signature = f.message;
    r.category = f.category;
    opt_.alerts->write(r);
  }
  return blocks;
}

void Runtime::send(std::uint16_t to, const InspectDesc& d) {
  OutRing& o = outs_[to];
  if (!o.present) return;
  {
    std::unique_lock lk(o.mu);
    while (o.ring.enqueue_burst(&d, 1) == 0) {
      if (o.ring.broken() || stop_.load(std::memory_order_relaxed)) {
        note_error("svm " + opt_.name + ": ring to node " + std::to_string(to) +
                   (o.ring.broken() ? " broken: " + o.ring.error() : " full at shutdown"));
        return;
      }
      // Full: the consumer (a manager loop that always drains) frees room soon. Backpressure.
      lk.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      lk.lock();
    }
  }
  if (auto where = ch_.doorbell_of(to)) {
    (void)rpc::notify(o.ring.consumer_sleeping(), ringer_, where->first, where->second);
  }
}

void Runtime::send_verdict(const InspectDesc& in, InspectAction a, InspectReason why,
                           std::uint8_t step, InspectKind kind) {
  InspectDesc v = in;
  v.kind = kind;
  v.action = a;
  v.reason = static_cast<std::uint32_t>(why);
  v.from_node = opt_.node;
  v.step = step;
  send(rpc::kToeNode, v);
}

void Runtime::send_alert_up(const StreamInfo& info, Direction dir, const Finding& f) {
  tosec::v1::ControlMessage m;
  std::lock_guard lk(ctl_up_mu_);
  m.set_seq(++ctl_seq_);
  m.set_sender("svm." + opt_.name);
  auto* a = m.mutable_alert();
  a->set_stream_id(info.stream_id);
  a->set_guest(info.guest);
  a->set_svm(opt_.name);
  a->set_rule(f.rule_id);
  a->set_rule_id(signature_number(f.rule_id));
  a->set_message(f.message);
  a->set_category(f.category);
  a->set_action(tosec::v1::ALERT_ACTION_BLOCKED);
  a->set_direction(dir == Direction::kOutbound ? tosec::v1::DIRECTION_OUTGOING
                                               : tosec::v1::DIRECTION_INCOMING);
  if (auto s = ctl_up_->send(m); !s) {
    // Informational only (the verdict descriptor carries the decision): count and go on.
    c_.control_errors.fetch_add(1, std::memory_order_relaxed);
  }
}

tosec::v1::SvmStats Runtime::stats() const {
  tosec::v1::SvmStats s;
  auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.set_svm(opt_.name);
  s.set_svm_id(opt_.node);
  s.set_payloads(ld(c_.payloads));
  s.set_bytes(ld(c_.bytes));
  s.set_verdict_pass(ld(c_.verdict_pass));
  s.set_verdict_block(ld(c_.verdict_block));
  s.set_verdict_log(ld(c_.verdict_log));
  s.set_alerts(ld(c_.alerts));
  s.set_bad_descriptors(ld(c_.bad_descriptors));
  s.set_unknown_streams(ld(c_.unknown_streams));
  s.set_streams_total(ld(c_.streams_total));
  s.set_forwards(ld(c_.forwards));
  return s;
}

}  // namespace

rpc::Result<std::unique_ptr<SvmRuntime>> SvmRuntime::create(
    const rpc::InspectionChannel& channel, Engine& engine, rpc::DoorbellRinger& ringer,
    rpc::DoorbellWaiter& waiter, rpc::PeerId self_peer, rpc::Vector own_vector,
    SvmRuntimeOptions options) {
  if (options.node == rpc::kToeNode || options.node >= channel.nodes()) {
    return rpc::Error{EINVAL, "svm runtime: node " + std::to_string(options.node) + " out of [1, " +
                                  std::to_string(channel.nodes()) + ")"};
  }
  auto rt = std::make_unique<Runtime>(channel, engine, ringer, waiter, self_peer, own_vector,
                                      std::move(options));
  if (auto s = rt->init(); !s) return s.error();
  return std::unique_ptr<SvmRuntime>(std::move(rt));
}

}  // namespace tosec::svm
