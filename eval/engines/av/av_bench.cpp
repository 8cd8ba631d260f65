// av engine throughput: benign, HTML-like, unique payloads through the StreamInspector next to
// bare cl_scanmap_callback() on the same buffers with the same libclamav settings, in the same
// run (ratios only mean something within one run on these noisy 2-core machines).
//
//   <build>/bin/av_bench                          # all pairs, ratio table at the end
//   <build>/bin/av_bench --benchmark_filter=1460
//
// Pairs:
//   Window1460  a stream of 1460-byte payloads, window mode (each scan = 4 KiB overlap + payload,
//               raw parsers, cache off) vs one bare raw scan of each 1460-byte payload.
//   Window64K   64 KiB payloads, window mode vs bare raw scans of 64 KiB.
//   Object64K   64 KiB objects sent as 1460-byte payloads and scanned whole in object mode (all
//               parsers, cache on) vs one bare all-parsers scan of each 64 KiB object.
//   Http64K     (scan=http builds) a GET and a 64 KiB text/html response in 1460-byte segments,
//               body scanned whole when complete, vs one bare all-parsers scan of the body.
// Every buffer gets a fresh counter stamped into it before each scan, so libclamav's clean-MD5
// cache can never answer from memory (the bare side uses the same cache setting as its pair).
#include <benchmark/benchmark.h>
#include <clamav.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ratio_reporter.h"
#include "tosec/svm/engines/av.h"

namespace {

using namespace tosec::svm;

std::string rules_dir() { return std::string(TOSEC_SOURCE_DIR) + "/examples/rules/av"; }

std::vector<std::byte> html_buffer(std::size_t n) {
  std::string s;
  std::uint64_t i = 0;
  while (s.size() < n) {
    s += "<tr><td class=\"name\"><a href=\"/catalog/item/" + std::to_string(i) + "\">Item " +
         std::to_string(i) + "</a></td><td>" + std::to_string(i * 37 % 1000) + ".99</td></tr>\n";
    ++i;
  }
  s.resize(n);
  std::vector<std::byte> out(n);
  std::memcpy(out.data(), s.data(), n);
  return out;
}

// Makes the buffer unique: 16 hex digits of a global counter inside an HTML comment.
void stamp(std::vector<std::byte>& buf, std::size_t at = 0) {
  static std::uint64_t counter = 0;
  char tag[32];
  std::snprintf(tag, sizeof tag, "<!--%016llx-->", static_cast<unsigned long long>(++counter));
  std::memcpy(buf.data() + at, tag, std::strlen(tag));
}

// The baseline: libclamav alone, configured like the engine's mode.
class BareClam {
 public:
  BareClam(bool all_parsers, bool cache) {
    // cl_init() already ran inside make_av_engine() (the first pair builds it first).
    dir_ = "/dev/shm/tosec-av-bench-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
    engine_ = cl_engine_new();
    cl_engine_set_str(engine_, CL_ENGINE_TMPDIR, dir_.c_str());
    cl_engine_set_num(engine_, CL_ENGINE_DISABLE_CACHE, cache ? 0 : 1);
    cl_engine_set_num(engine_, CL_ENGINE_MAX_FILESIZE, 25 << 20);
    unsigned sigs = 0;
    if (cl_load(rules_dir().c_str(), engine_, &sigs, CL_DB_STDOPT) != CL_SUCCESS ||
        cl_engine_compile(engine_) != CL_SUCCESS) {
      std::fprintf(stderr, "bare libclamav setup failed\n");
      std::abort();
    }
    options_.parse = all_parsers ? ~0u : 0u;
  }
  ~BareClam() {
    cl_engine_free(engine_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  cl_error_t scan(const std::vector<std::byte>& buf) {
    cl_fmap_t* map = cl_fmap_open_memory(buf.data(), buf.size());
    const char* virname = nullptr;
    unsigned long scanned = 0;
    const cl_error_t r =
        cl_scanmap_callback(map, nullptr, &virname, &scanned, engine_, &options_, nullptr);
    cl_fmap_close(map);
    return r;
  }

 private:
  std::string dir_;
  cl_engine* engine_ = nullptr;
  cl_scan_options options_{};
};

struct AvUnderTest {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<EngineThread> thread;
  explicit AvUnderTest(std::map<std::string, std::string> options) {
    auto e = make_av_engine(EngineConfig{"av-bench", rules_dir(), std::move(options)});
    if (!e.ok()) {
      std::fprintf(stderr, "make_av_engine: %s\n", e.error().message.c_str());
      std::abort();
    }
    engine = std::move(*e);
    thread = std::move(*engine->make_thread());
  }
};

Payload payload_of(const std::vector<std::byte>& buf, std::uint64_t& offset, std::size_t at,
                   std::size_t n) {
  Payload p;
  p.direction = Direction::kInbound;
  p.flow = Flow::kToClient;
  p.stream_offset = offset;
  p.bytes = std::span<const std::byte>(buf.data() + at, n);
  offset += n;
  return p;
}

void window_inspector(benchmark::State& state, std::size_t size) {
  AvUnderTest av(std::map<std::string, std::string>{});
  auto buf = html_buffer(size);
  auto inspector = av.thread->open_stream(StreamInfo{});
  std::uint64_t offset = 0;
  for (auto _ : state) {
    stamp(buf);
    const Verdict v = inspector->inspect(payload_of(buf, offset, 0, size));
    if (v.action != Action::kPass) state.SkipWithError("benign payload flagged");
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

void bare(benchmark::State& state, std::size_t size, bool all_parsers, bool cache) {
  AvUnderTest warm(std::map<std::string, std::string>{});  // makes sure cl_init ran (see BareClam)
  BareClam clam(all_parsers, cache);
  auto buf = html_buffer(size);
  for (auto _ : state) {
    stamp(buf);
    if (clam.scan(buf) != CL_CLEAN) state.SkipWithError("benign buffer not clean");
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

void BM_Window1460_Inspector(benchmark::State& s) { window_inspector(s, 1460); }
void BM_Window1460_Bare(benchmark::State& s) { bare(s, 1460, false, false); }
void BM_Window64K_Inspector(benchmark::State& s) { window_inspector(s, 64 << 10); }
void BM_Window64K_Bare(benchmark::State& s) { bare(s, 64 << 10, false, false); }

void BM_Object64K_Inspector(benchmark::State& state) {
  AvUnderTest av(std::map<std::string, std::string>{{"scan", "object"}});
  constexpr std::size_t kSize = 64 << 10;
  auto buf = html_buffer(kSize);
  for (auto _ : state) {
    stamp(buf);
    // One object per stream: 1460-byte segments, scanned whole at finish().
    auto inspector = av.thread->open_stream(StreamInfo{});
    std::uint64_t offset = 0;
    for (std::size_t at = 0; at < kSize; at += 1460) {
      inspector->inspect(payload_of(buf, offset, at, std::min<std::size_t>(1460, kSize - at)));
    }
    if (inspector->finish().action != Action::kPass) state.SkipWithError("benign object flagged");
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kSize));
}
void BM_Object64K_Bare(benchmark::State& s) { bare(s, 64 << 10, true, true); }

#if TOSEC_AV_WITH_HTTP
void BM_Http64K_Inspector(benchmark::State& state) {
  AvUnderTest av(std::map<std::string, std::string>{{"scan", "http"}});
  constexpr std::size_t kSize = 64 << 10;
  auto body = html_buffer(kSize);
  static const char kGet[] = "GET /page HTTP/1.1\r\nHost: bench.test\r\n\r\n";
  const std::string head_text =
      "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: " + std::to_string(kSize) +
      "\r\n\r\n";
  std::vector<std::byte> get(sizeof kGet - 1), head(head_text.size());
  std::memcpy(get.data(), kGet, get.size());
  std::memcpy(head.data(), head_text.data(), head.size());
  for (auto _ : state) {
    stamp(body);
    // One exchange per stream: the request, the response head, the body in 1460-byte segments.
    auto inspector = av.thread->open_stream(StreamInfo{});
    std::uint64_t out_offset = 0, in_offset = 0;
    Payload req = payload_of(get, out_offset, 0, get.size());
    req.direction = Direction::kOutbound;
    req.flow = Flow::kToServer;
    inspector->inspect(req);
    inspector->inspect(payload_of(head, in_offset, 0, head.size()));
    Verdict v;
    for (std::size_t at = 0; at < kSize; at += 1460) {
      v = inspector->inspect(
          payload_of(body, in_offset, at, std::min<std::size_t>(1460, kSize - at)));
    }
    if (v.action != Action::kPass) state.SkipWithError("benign body flagged");
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kSize));
}
void BM_Http64K_Bare(benchmark::State& s) { bare(s, 64 << 10, true, true); }
BENCHMARK(BM_Http64K_Bare)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_Http64K_Inspector)->UseRealTime()->MinTime(1.0);
#endif

BENCHMARK(BM_Window1460_Bare)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_Window1460_Inspector)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_Window64K_Bare)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_Window64K_Inspector)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_Object64K_Bare)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_Object64K_Inspector)->UseRealTime()->MinTime(1.0);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  tosec::eval::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nav engine vs bare libclamav, same buffers, same run\n");
  std::printf("%-12s %10s %12s %10s %12s %10s\n", "pair", "bare MB/s", "bare us/op", "av MB/s",
              "av us/op", "av/bare");
  const struct {
    const char* pair;
    double bytes;
  } pairs[] = {{"Window1460", 1460},
               {"Window64K", 64 << 10},
               {"Object64K", 64 << 10},
               {"Http64K", 64 << 10}};
  for (const auto& p : pairs) {
    const std::string suffix = "/min_time:1.000/real_time";
    const double bare_ns = reporter.ns_per_iter(std::string("BM_") + p.pair + "_Bare" + suffix);
    const double av_ns = reporter.ns_per_iter(std::string("BM_") + p.pair + "_Inspector" + suffix);
    if (bare_ns <= 0 || av_ns <= 0) continue;
    std::printf("%-12s %10.1f %12.1f %10.1f %12.1f %9.2fx\n", p.pair, p.bytes / bare_ns * 1e3,
                bare_ns / 1e3, p.bytes / av_ns * 1e3, av_ns / 1e3, av_ns / bare_ns);
  }
  benchmark::Shutdown();
  return 0;
}
