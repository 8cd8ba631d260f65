// IDS engine throughput: 1460-byte payloads of benign HTTP-like text through
// StreamInspector::inspect (shipped rules, window retention, verification bookkeeping) against
// bare hs_scan_stream on the very same Hyperscan database, in the same run.
//   [IDS_BENCH_RULES=file] ids_bench
#include <benchmark/benchmark.h>
#include <hs.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "compiled_rules.h"
#include "ratio_reporter.h"
#include "tosec/svm/engines/ids.h"
#include "tosec/svm/engines/ids_rule.h"

namespace {

using namespace tosec::svm;

constexpr std::size_t kPayload = 1460;
// IDS_BENCH_RULES=<file> measures another rule set (the shipped one by default).
const std::string kRules = std::getenv("IDS_BENCH_RULES") != nullptr
                               ? std::getenv("IDS_BENCH_RULES")
                               : std::string(TOSEC_SOURCE_DIR) + "/examples/rules/ids.rules";

// ~1 MiB of requests and responses a shop's clients and servers exchange, deterministic.
const std::string& corpus() {
  static const std::string text = [] {
    std::mt19937 rng(42);
    const char* paths[] = {"/index.html", "/static/app.js", "/img/logo.png",   "/api/v1/items",
                           "/search",     "/cart/add",      "/account/orders", "/help/faq.html"};
    const char* words[] = {"shoes",  "red",   "summer", "sale",   "blue",  "jacket", "size", "kids",
                           "garden", "chair", "lamp",   "coffee", "table", "book",   "phone"};
    std::string s;
    while (s.size() < (1u << 20)) {
      s += "GET ";
      s += paths[rng() % 8];
      s += "?q=";
      s += words[rng() % 15];
      s += "&page=" + std::to_string(rng() % 40) + "&sort=price_asc HTTP/1.1\r\n";
      s += "Host: shop.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n";
      s += "Accept: text/html,application/xhtml+xml\r\nCookie: session=" + std::to_string(rng()) +
           "\r\n\r\n";
      s += "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 512\r\n\r\n";
      s += "<html><body><ul>";
      for (int i = 0; i < 12; ++i) {
        s += "<li class=\"item\"><a href=\"/item/" + std::to_string(rng() % 100000) + "\">";
        s += words[rng() % 15];
        s += ' ';
        s += words[rng() % 15];
        s += "</a> $" + std::to_string(rng() % 500) + ".99</li>";
      }
      s += "</ul></body></html>\r\n";
    }
    s.resize((s.size() / kPayload) * kPayload);
    return s;
  }();
  return text;
}

// This thread's CPU time: the machine is shared and noisy, so besides real time (what
// RatioReporter compares) each benchmark reports per-core throughput from CPU time.
double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

void set_cpu_rate(benchmark::State& state, double cpu_start) {
  const double ns = thread_cpu_ns() - cpu_start;
  if (ns > 0) {
    state.counters["cpu_MBps"] =
        static_cast<double>(state.iterations()) * static_cast<double>(kPayload) / ns * 1e3;
  }
}

StreamInfo bench_stream() {
  StreamInfo s;
  s.stream_id = 1;
  s.protocol = 6;
  s.local.family = s.remote.family = 2;  // AF_INET
  s.local.port = 40000;
  s.remote.port = 80;
  return s;
}

void BM_IdsInspect(benchmark::State& state) {
  auto engine = make_ids_engine(EngineConfig{"ids", kRules, {}});
  if (!engine.ok()) return state.SkipWithError(engine.error().message.c_str());
  auto thread = (*engine)->make_thread();
  if (!thread.ok()) return state.SkipWithError(thread.error().message.c_str());
  auto inspector = (*thread)->open_stream(bench_stream());
  const std::string& text = corpus();
  std::size_t at = 0;
  std::uint64_t offset = 0;
  std::size_t findings = 0;
  const double cpu_start = thread_cpu_ns();
  for (auto _ : state) {
    Payload p;
    p.stream_offset = offset;
    p.bytes = std::as_bytes(std::span(text.data() + at, kPayload));
    const Verdict v = inspector->inspect(p);
    findings += v.findings.size();
    offset += kPayload;
    at = at + kPayload == text.size() ? 0 : at + kPayload;
  }
  set_cpu_rate(state, cpu_start);
  if (findings != 0) state.SkipWithError("benign corpus raised findings");
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kPayload));
}

int count_match(unsigned, unsigned long long, unsigned long long, unsigned, void* ctx) {
  ++*static_cast<std::size_t*>(ctx);
  return 0;
}

void BM_HyperscanStream(benchmark::State& state) {
  auto rules = ids::load_ids_rules(kRules);
  if (!rules.ok()) return state.SkipWithError(rules.error().message.c_str());
  auto compiled = ids::CompiledRules::build(std::move(*rules), {});
  if (!compiled.ok()) return state.SkipWithError(compiled.error().message.c_str());
  const hs_database_t* db = (*compiled)->database(Flow::kToServer);
  hs_scratch_t* scratch = nullptr;
  hs_stream_t* stream = nullptr;
  if (hs_alloc_scratch(db, &scratch) != HS_SUCCESS ||
      hs_open_stream(db, 0, &stream) != HS_SUCCESS) {
    return state.SkipWithError("hyperscan setup failed");
  }
  const std::string& text = corpus();
  std::size_t at = 0;
  std::size_t hits = 0;
  const double cpu_start = thread_cpu_ns();
  for (auto _ : state) {
    hs_scan_stream(stream, text.data() + at, kPayload, 0, scratch, count_match, &hits);
    at = at + kPayload == text.size() ? 0 : at + kPayload;
  }
  set_cpu_rate(state, cpu_start);
  benchmark::DoNotOptimize(hits);
  hs_close_stream(stream, scratch, nullptr, nullptr);
  hs_free_scratch(scratch);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kPayload));
}

BENCHMARK(BM_HyperscanStream)->MinTime(2)->UseRealTime();
BENCHMARK(BM_IdsInspect)->MinTime(2)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  tosec::eval::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  const std::string hs_name = "BM_HyperscanStream/min_time:2.000/real_time";
  const std::string ids_name = "BM_IdsInspect/min_time:2.000/real_time";
  const double hs_ns = reporter.ns_per_iter(hs_name);
  const double ids_ns = reporter.ns_per_iter(ids_name);
  const double hs_cpu = reporter.counter(hs_name, "cpu_MBps");
  const double ids_cpu = reporter.counter(ids_name, "cpu_MBps");
  std::printf("\n1460-byte benign HTTP-like payloads, %s, one core, same run\n", kRules.c_str());
  if (auto engine = make_ids_engine(EngineConfig{"ids", kRules, {}}); engine.ok()) {
    std::printf("engine: %s\n", (*engine)->summary().c_str());
  }
  std::printf("%-32s %10s %8s %14s %8s\n", "mode", "real MB/s", "vs bare", "CPU-time MB/s",
              "vs bare");
  if (hs_ns > 0 && hs_cpu > 0) {
    std::printf("%-32s %10.0f %8s %14.0f %8s\n", "bare hs_scan_stream (same db)",
                kPayload / hs_ns * 1e3, "1.00x", hs_cpu, "1.00x");
  }
  if (hs_ns > 0 && ids_ns > 0 && hs_cpu > 0 && ids_cpu > 0) {
    std::printf("%-32s %10.0f %7.2fx %14.0f %7.2fx\n", "ids StreamInspector::inspect",
                kPayload / ids_ns * 1e3, hs_ns / ids_ns, ids_cpu, ids_cpu / hs_cpu);
  }
  return 0;
}
