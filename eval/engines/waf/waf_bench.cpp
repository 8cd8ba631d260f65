// waf_bench: benign GET requests per second through the WAF's StreamInspector (libhtp +
// ModSecurity + the whole CRS) next to the bare ModSecurity Transaction API fed a pre-parsed
// request, in the same run; the ratio table at the end is what to read (the machines are noisy).
//
//   build/release/bin/waf_bench                       # all, with the ratio table
//   build/release/bin/waf_bench --benchmark_filter=Bare
//   TOSEC_WAF_CONF=/path/waf.conf waf_bench           # another rules file
//   LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 waf_bench   # if not linked
//
// Every iteration is one HTTP transaction with all five ModSecurity phases: a browser-like GET
// and a small text/html 200 response (phase 4 scans it).
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ratio_reporter.h"
#include "tosec/svm/engines/http_stream.h"
#include "tosec/svm/engines/waf.h"

namespace {

using tosec::svm::Direction;
using tosec::svm::Payload;
using tosec::svm::StreamInfo;

const char* conf_path() {
  const char* env = std::getenv("TOSEC_WAF_CONF");
  return env != nullptr ? env : TOSEC_WAF_CONF;
}

const std::string kRequest =
    "GET /products/list.php?id=42&sort=asc HTTP/1.1\r\n"
    "Host: shop.example\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";
const std::string kBody = "<html><body><h1>Products</h1><p>42 items</p></body></html>";
const std::string kResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " +
    std::to_string(kBody.size()) + "\r\n\r\n" + kBody;

// The same request, pre-parsed, for the bare API.
const std::vector<std::pair<std::string, std::string>> kRequestHeaders = {
    {"Host", "shop.example"},
    {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0"},
    {"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
    {"Accept-Language", "en-US,en;q=0.5"},
    {"Accept-Encoding", "gzip, deflate"},
    {"Connection", "keep-alive"},
};
const std::vector<std::pair<std::string, std::string>> kResponseHeaders = {
    {"Content-Type", "text/html; charset=utf-8"},
    {"Content-Length", std::to_string(kBody.size())},
};

StreamInfo stream_info() {
  StreamInfo info;
  info.stream_id = 1;
  info.local.family = 2;
  info.local.addr[0] = 10;
  info.local.addr[3] = 2;
  info.local.port = 40000;
  info.remote.family = 2;
  info.remote.addr[0] = 10;
  info.remote.addr[3] = 1;
  info.remote.port = 80;
  return info;
}

Payload payload(const StreamInfo& info, Direction d, const std::string& bytes,
                std::uint64_t offset) {
  Payload p;
  p.direction = d;
  p.flow = info.flow_of(d);
  p.stream_offset = offset;
  p.bytes = {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()};
  return p;
}

tosec::svm::Engine& engine() {
  static std::unique_ptr<tosec::svm::Engine> e = [] {
    auto r = tosec::svm::make_waf_engine({"waf-bench", conf_path(), {}});
    if (!r) {
      std::fprintf(stderr, "waf_bench: %s\n", r.error().message.c_str());
      std::exit(1);
    }
    return std::move(*r);
  }();
  return *e;
}

// A keep-alive connection: one StreamInspector, one request + response per iteration.
void BM_StreamInspector_KeepAlive(benchmark::State& st) {
  auto thread = engine().make_thread();
  const StreamInfo info = stream_info();
  auto inspector = (*thread)->open_stream(info);
  std::uint64_t out = 0;
  std::uint64_t in = 0;
  for (auto _ : st) {
    auto v1 = inspector->inspect(payload(info, Direction::kOutbound, kRequest, out));
    auto v2 = inspector->inspect(payload(info, Direction::kInbound, kResponse, in));
    out += kRequest.size();
    in += kResponse.size();
    if (v1.action != tosec::svm::Action::kPass || v2.action != tosec::svm::Action::kPass) {
      st.SkipWithError("benign request not passed");
      break;
    }
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

// A new connection per request (open_stream, request, response, finish).
void BM_StreamInspector_NewConnection(benchmark::State& st) {
  auto thread = engine().make_thread();
  const StreamInfo info = stream_info();
  for (auto _ : st) {
    auto inspector = (*thread)->open_stream(info);
    auto v1 = inspector->inspect(payload(info, Direction::kOutbound, kRequest, 0));
    auto v2 = inspector->inspect(payload(info, Direction::kInbound, kResponse, 0));
    auto v3 = inspector->finish();
    if (v1.action != tosec::svm::Action::kPass || v2.action != tosec::svm::Action::kPass ||
        v3.action != tosec::svm::Action::kPass) {
      st.SkipWithError("benign request not passed");
      break;
    }
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

// libhtp alone (no ModSecurity): what the stream parsing costs.
void BM_HttpParserOnly(benchmark::State& st) {
  auto cfg = tosec::svm::http::HttpParserConfig::create();
  tosec::svm::http::HttpEvents none;
  tosec::svm::http::HttpStreamParser parser(*cfg, none, stream_info());
  const auto req = std::as_bytes(std::span(kRequest));
  const auto res = std::as_bytes(std::span(kResponse));
  for (auto _ : st) {
    parser.to_server(req);
    parser.to_client(res);
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

void ignore_log(void*, const void*) {}

bool intervened(modsecurity::Transaction& t) {
  modsecurity::ModSecurityIntervention it;
  modsecurity::intervention::clean(&it);
  const bool hit = t.intervention(&it) && it.disruptive != 0;
  modsecurity::intervention::free(&it);
  return hit;
}

// The baseline: ModSecurity's own API with the request already parsed, same rules.
void BM_BareModSecurity(benchmark::State& st) {
  modsecurity::ModSecurity ms;
  ms.setServerLogCb(ignore_log, modsecurity::RuleMessageLogProperty);
  modsecurity::RulesSet rules;
  if (rules.loadFromUri(conf_path()) < 0) {
    st.SkipWithError(rules.getParserError().c_str());
    return;
  }
  for (auto _ : st) {
    modsecurity::Transaction t(&ms, &rules, nullptr);
    bool hit = false;
    t.processConnection("10.0.0.2", 40000, "10.0.0.1", 80);
    t.processURI("/products/list.php?id=42&sort=asc", "GET", "1.1");
    for (const auto& [k, v] : kRequestHeaders) t.addRequestHeader(k, v);
    t.processRequestHeaders();
    hit = hit || intervened(t);
    t.processRequestBody();
    hit = hit || intervened(t);
    for (const auto& [k, v] : kResponseHeaders) t.addResponseHeader(k, v);
    t.processResponseHeaders(200, "HTTP 1.1");
    hit = hit || intervened(t);
    t.appendResponseBody(reinterpret_cast<const unsigned char*>(kBody.data()), kBody.size());
    t.processResponseBody();
    hit = hit || intervened(t);
    t.processLogging();
    if (hit) {
      st.SkipWithError("benign request intervened");
      break;
    }
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

// CPU time, not real time: the question is what one request costs a core, and the shared
// machines here are loaded enough that wall time mostly measures waiting for a core.
BENCHMARK(BM_BareModSecurity)->MinTime(3.0);
BENCHMARK(BM_StreamInspector_KeepAlive)->MinTime(3.0);
BENCHMARK(BM_StreamInspector_NewConnection)->MinTime(3.0);
BENCHMARK(BM_HttpParserOnly)->MinTime(1.0);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("rules: %s\n", conf_path());
  // tosec_svm_waf links tcmalloc_minimal when it is installed (TOSEC_WAF_TCMALLOC); say which.
  std::printf("allocator: %s\n",
              dlsym(RTLD_DEFAULT, "tc_malloc") != nullptr ? "tcmalloc" : "glibc malloc");
  engine();  // load once, outside the timings
  std::printf("engine: %s\n", std::string(engine().summary()).c_str());
  tosec::eval::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  // items_per_second is computed on the benchmark thread's CPU time (no UseRealTime()).
  auto rps = [&](const char* name) { return reporter.counter(name, "items_per_second"); };
  const double bare = rps("BM_BareModSecurity/min_time:3.000");
  std::printf(
      "\nBenign GET + 200 text/html, all 5 phases, whole CRS, 1 thread (same run, CPU time)\n");
  std::printf("%-34s %14s %12s %10s\n", "path", "CPU us/request", "req/s/core", "vs bare");
  const std::pair<const char*, const char*> rows[] = {
      {"bare ModSecurity (pre-parsed)", "BM_BareModSecurity/min_time:3.000"},
      {"StreamInspector, keep-alive", "BM_StreamInspector_KeepAlive/min_time:3.000"},
      {"StreamInspector, new connection", "BM_StreamInspector_NewConnection/min_time:3.000"},
      {"libhtp parser only", "BM_HttpParserOnly/min_time:1.000"},
  };
  for (const auto& [label, name] : rows) {
    const double r = rps(name);
    if (r <= 0) continue;
    if (bare > 0) {
      std::printf("%-34s %14.1f %12.0f %9.2fx\n", label, 1e6 / r, r, bare / r);
    } else {
      std::printf("%-34s %14.1f %12.0f %10s\n", label, 1e6 / r, r, "n/a");
    }
  }
  std::printf(
      "(vs bare: CPU time per request relative to the bare ModSecurity API; >1 is slower)\n");
  benchmark::Shutdown();
  return 0;
}
