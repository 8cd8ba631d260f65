#include "ids_stream_inspector.h"

#include <algorithm>
#include <string>

#include "rule_verifier.h"

namespace tosec::svm::ids {
namespace {

bool test_bit(const std::vector<std::uint64_t>& bits, std::uint32_t i) {
  return (bits[i / 64] >> (i % 64)) & 1u;
}
void set_bit(std::vector<std::uint64_t>& bits, std::uint32_t i) {
  bits[i / 64] |= std::uint64_t{1} << (i % 64);
}

struct ScanContext {
  const std::vector<std::uint64_t>* eligible;  // empty: all
  const std::vector<std::uint64_t>* fired;     // empty: none
  std::vector<PrefilterHit>* hits;
};

// Hot path: two bit tests, and a push only for a rule that can still fire here.
int on_match(unsigned int id, unsigned long long /*from*/, unsigned long long to,
             unsigned int /*flags*/, void* ctx) {
  auto* c = static_cast<ScanContext*>(ctx);
  if (!c->eligible->empty() && !test_bit(*c->eligible, id)) return 0;
  if (!c->fired->empty() && test_bit(*c->fired, id)) return 0;
  c->hits->push_back(PrefilterHit{id, to});
  return 0;
}

}  // namespace

IdsStreamInspector::IdsStreamInspector(std::shared_ptr<ThreadState> thread, const StreamInfo& info)
    : ts_(std::move(thread)) {
  const auto& rules = ts_->rules->rules();
  for (int f = 0; f < 2; ++f) {
    const Flow flow = static_cast<Flow>(f);
    DirectionState& d = dirs_[f];
    d.db = ts_->rules->database(flow);
    if (d.db == nullptr) continue;
    const RuleFlow want = flow == Flow::kToServer ? RuleFlow::kToServer : RuleFlow::kToClient;
    std::vector<std::uint64_t> bits((rules.size() + 63) / 64, 0);
    std::size_t in_db = 0;
    std::size_t applies = 0;
    for (std::size_t i = 0; i < rules.size(); ++i) {
      const Rule& r = rules[i].rule;
      if (r.flow != RuleFlow::kAny && r.flow != want) continue;
      ++in_db;
      if (!CompiledRules::header_applies(r, info, flow)) continue;
      ++applies;
      set_bit(bits, static_cast<std::uint32_t>(i));
      if (!rules[i].exact) d.needs_window = true;
    }
    d.active = applies > 0;
    if (applies != in_db) d.eligible = std::move(bits);
  }
}

IdsStreamInspector::~IdsStreamInspector() {
  // A blocked stream gets no finish(): free the Hyperscan state without reporting.
  for (auto& d : dirs_) {
    if (d.stream != nullptr) hs_close_stream(d.stream, nullptr, nullptr, nullptr);
  }
}

Verdict IdsStreamInspector::engine_error(const char* what, int code) {
  failed_ = true;
  Verdict v;
  // Fail closed: a stream the engine can no longer inspect is not let through unchecked.
  v.add(Finding{
      Action::kBlock, "ids:engine-error",
      std::string("ids: ") + what + " failed (hyperscan error " + std::to_string(code) + ")",
      "engine-error"});
  return v;
}

Verdict IdsStreamInspector::inspect(const Payload& payload) {
  if (passed_ || failed_) return {};
  DirectionState& d = dirs_[static_cast<int>(payload.flow)];
  if (!d.active || d.finished) return {};
  if (d.stream == nullptr) {
    if (const hs_error_t rc = hs_open_stream(d.db, 0, &d.stream); rc != HS_SUCCESS) {
      d.stream = nullptr;
      return engine_error("hs_open_stream", rc);
    }
    if (d.needs_window) d.window.emplace(ts_->rules->options().window_bytes);
  }
  if (d.window) d.window->append(payload.bytes);
  ts_->hits.clear();
  ScanContext ctx{&d.eligible, &d.fired, &ts_->hits};
  const hs_error_t rc = hs_scan_stream(
      d.stream, reinterpret_cast<const char*>(payload.bytes.data()),
      static_cast<unsigned int>(payload.bytes.size()), 0, ts_->scratch, on_match, &ctx);
  if (rc != HS_SUCCESS) return engine_error("hs_scan_stream", rc);
  if (ts_->hits.empty() && d.pending.empty()) return {};
  return process_hits(d, false);
}

Verdict IdsStreamInspector::finish() {
  Verdict v;
  for (auto& d : dirs_) {
    if (d.stream == nullptr) continue;
    ts_->hits.clear();
    ScanContext ctx{&d.eligible, &d.fired, &ts_->hits};
    // End-anchored ($) prefilter matches are reported only here.
    const bool report = !passed_ && !failed_;
    const hs_error_t rc = hs_close_stream(d.stream, ts_->scratch, report ? on_match : nullptr,
                                          report ? &ctx : nullptr);
    d.stream = nullptr;
    d.finished = true;
    if (!report) continue;
    if (rc != HS_SUCCESS) return engine_error("hs_close_stream", rc);
    if (ts_->hits.empty() && d.pending.empty()) continue;
    Verdict part = process_hits(d, true);
    for (auto& f : part.findings) v.add(std::move(f));
  }
  if (passed_) return {};
  return v;
}

void IdsStreamInspector::fire(DirectionState& d, std::uint32_t rule, Verdict& v) {
  const auto& rules = ts_->rules->rules();
  if (d.fired.empty()) d.fired.assign((rules.size() + 63) / 64, 0);
  set_bit(d.fired, rule);
  const CompiledRule& cr = rules[rule];
  if (cr.is_pass) {
    passed_ = true;
    return;
  }
  v.add(Finding{cr.action, cr.rule_id, cr.rule.msg, cr.rule.classtype});
}

Verdict IdsStreamInspector::process_hits(DirectionState& d, bool end_of_stream) {
  const auto& rules = ts_->rules->rules();
  Verdict v;
  for (const PrefilterHit& h : ts_->hits) {
    if (!d.fired.empty() && test_bit(d.fired, h.rule)) continue;
    if (rules[h.rule].exact) {
      fire(d, h.rule, v);
      continue;
    }
    auto it = std::find_if(d.pending.begin(), d.pending.end(),
                           [&](const Pending& p) { return p.rule == h.rule; });
    if (it == d.pending.end()) {
      d.pending.push_back(Pending{h.rule, h.end});
    } else {
      it->last_hit_end = std::max(it->last_hit_end, h.end);
    }
  }
  if (!d.pending.empty() && d.window) {
    const StreamWindow& win = *d.window;
    win.linearize(ts_->linear.get());
    const VerifyWindow w{ts_->linear.get(), win.size(), win.start(), end_of_stream};
    RuleVerifier verifier(*ts_->pcre, ts_->rules->options().verify_budget);
    for (std::size_t i = 0; i < d.pending.size();) {
      const Pending p = d.pending[i];
      const CompiledRule& cr = rules[p.rule];
      bool done = !d.fired.empty() && test_bit(d.fired, p.rule);
      if (!done && verifier.matches(cr, w)) {
        fire(d, p.rule, v);
        done = true;
      }
      // Drop a candidate once no later byte can complete it.
      if (!done) {
        done = end_of_stream || (cr.bounded ? win.total() >= p.last_hit_end + cr.reach
                                            : p.last_hit_end <= win.start());
      }
      if (done) {
        d.pending[i] = d.pending.back();
        d.pending.pop_back();
      } else {
        ++i;
      }
    }
  }
  if (passed_) {
    for (auto& dir : dirs_) dir.pending.clear();
    return {};
  }
  return v;
}

}  // namespace tosec::svm::ids
