// Channel micro-benchmarks: ring burst throughput, and one-hop latency between two processes
// through a region in sleep, adaptive and spin modes, next to the floor measured in the same
// run: a plain eventfd ping-pong between two processes (blocking reads, nothing else).
//
//   build/release/bin/channel_bench                 # all, with the ratio table at the end
//   build/release/bin/channel_bench --benchmark_filter=Hop
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <thread>

#include "pingpong.h"
#include "ratio_reporter.h"

using namespace tosec::rpc;
using tosec::eval::PingPongEnd;

namespace {

// An anonymous shared mapping, inherited across fork().
struct SharedMap {
  explicit SharedMap(std::size_t n) : size(n) {
    base = static_cast<std::byte*>(
        ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  }
  ~SharedMap() { ::munmap(base, size); }
  std::span<std::byte> bytes() const { return {base, size}; }
  std::byte* base;
  std::size_t size;
};

// Both ends of one 1024 x 64-byte ring in a private region.
struct RingPair {
  RingPair() : map(layout().pow2_size()) {
    (void)layout().format(map.bytes());
    view = std::move(*RegionView::attach(map.bytes()));
    producer = std::move(*SpscRing::attach(view, "r", RingEnd::kProducer));
    consumer = std::move(*SpscRing::attach(view, "r", RingEnd::kConsumer));
  }
  static RegionLayout layout() {
    RegionLayout l;
    l.add_ring("r", 1024, 64);
    return l;
  }
  SharedMap map;
  RegionView view;
  SpscRing producer, consumer;
};

// ---- ring throughput, one thread -------------------------------------------------------------

void BM_RingBurstSingleThread(benchmark::State& st) {
  const auto burst = static_cast<std::uint32_t>(st.range(0));
  RingPair ring;
  auto* p = &ring.producer;
  auto* c = &ring.consumer;
  std::array<std::array<std::byte, 64>, 256> buf{};
  for (auto _ : st) {
    benchmark::DoNotOptimize(p->enqueue_burst(buf.data(), burst));
    benchmark::DoNotOptimize(c->dequeue_burst(buf.data(), burst));
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * burst);
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * burst * 64);
}
BENCHMARK(BM_RingBurstSingleThread)->Arg(1)->Arg(8)->Arg(32)->Arg(128);

// ---- ring throughput, producer and consumer threads ------------------------------------------

void BM_RingBurstTwoThreads(benchmark::State& st) {
  const auto burst = static_cast<std::uint32_t>(st.range(0));
  RingPair ring;
  auto* p = &ring.producer;
  auto* c = &ring.consumer;
  constexpr std::uint64_t kPerIter = 1 << 20;
  for (auto _ : st) {
    std::thread prod([&] {
      std::array<std::array<std::byte, 64>, 128> buf{};
      for (std::uint64_t sent = 0; sent < kPerIter;) {
        const auto n = p->enqueue_burst(buf.data(), burst);
        sent += n;
        if (n == 0) std::this_thread::yield();
      }
    });
    std::array<std::array<std::byte, 64>, 128> out{};
    for (std::uint64_t got = 0; got < kPerIter;) {
      const auto n = c->dequeue_burst(out.data(), 128);
      got += n;
      if (n == 0) std::this_thread::yield();
    }
    prod.join();
  }
  st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(kPerIter));
  st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(kPerIter * 64));
}
BENCHMARK(BM_RingBurstTwoThreads)->Arg(1)->Arg(32)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- the floor: plain eventfd ping-pong between two processes ---------------------------------

void BM_EventfdPingPongFloor(benchmark::State& st) {
  const int a = ::eventfd(0, EFD_CLOEXEC);  // blocking: the cheapest possible wait
  const int b = ::eventfd(0, EFD_CLOEXEC);
  SharedMap stop_map(4096);
  auto* stop = new (stop_map.base) std::atomic<int>(0);
  const pid_t child = ::fork();
  if (child == 0) {
    std::uint64_t x = 0;
    const std::uint64_t one = 1;
    while (::read(a, &x, sizeof x) == sizeof x && stop->load() == 0) {
      if (::write(b, &one, sizeof one) != sizeof one) break;
    }
    ::_exit(0);
  }
  const std::uint64_t one = 1;
  std::uint64_t x = 0;
  for (auto _ : st) {
    if (::write(a, &one, sizeof one) != sizeof one || ::read(b, &x, sizeof x) != sizeof x) {
      st.SkipWithError("eventfd ping-pong failed");
      break;
    }
  }
  stop->store(1);
  (void)::write(a, &one, sizeof one);
  ::waitpid(child, nullptr, 0);
  ::close(a);
  ::close(b);
  st.counters["hop_ns"] =
      benchmark::Counter(static_cast<double>(st.iterations()) * 2,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_EventfdPingPongFloor)->UseRealTime()->MinTime(2.0);

// ---- ring + notification ping-pong between two processes -------------------------------------

void ring_hop(benchmark::State& st, SpinPolicy policy) {
  auto layout = tosec::eval::pingpong_layout();
  SharedMap m(layout.pow2_size());
  (void)layout.format(m.bytes());
  auto view = RegionView::attach(m.bytes());
  // One doorbell "peer" (id 1) whose vector 0 wakes the pinger and vector 1 the ponger;
  // created before fork, so both processes share the eventfds, as ivshmem peers do.
  EventfdDoorbells db;
  if (!db.create_own(1, 2).ok()) {
    st.SkipWithError("eventfd creation failed");
    return;
  }
  const pid_t child = ::fork();
  if (child == 0) {
    auto e = tosec::eval::attach_end(*view, false);
    if (!e) ::_exit(2);
    e->ringer = &db, e->waiter = &db, e->peer = 1, e->peer_vector = 0, e->own_vector = 1;
    e->policy = policy;
    ::_exit(tosec::eval::pong(*e, UINT64_MAX).ok() ? 0 : 1);
  }
  auto e = tosec::eval::attach_end(*view, true);
  e->ringer = &db, e->waiter = &db, e->peer = 1, e->peer_vector = 1, e->own_vector = 0;
  e->policy = policy;
  {
    tosec::eval::Pinger p(*e);
    for (auto _ : st) {
      if (auto s = p.round_trip(); !s) {
        st.SkipWithError(s.message().c_str());
        break;
      }
    }
    st.counters["sleeps_per_rt"] = static_cast<double>(p.waiter().stats().sleeps) /
                                   static_cast<double>(std::max<std::int64_t>(1, st.iterations()));
  }
  (void)tosec::eval::stop_ponger(*e);
  int status = 0;
  ::waitpid(child, &status, 0);
  st.counters["hop_ns"] =
      benchmark::Counter(static_cast<double>(st.iterations()) * 2,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_RingHop_Sleep(benchmark::State& st) { ring_hop(st, SpinPolicy::sleep_only()); }
void BM_RingHop_Adaptive(benchmark::State& st) { ring_hop(st, SpinPolicy{}); }
void BM_RingHop_Spin(benchmark::State& st) { ring_hop(st, SpinPolicy::spin_only()); }
BENCHMARK(BM_RingHop_Sleep)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_RingHop_Adaptive)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_RingHop_Spin)->UseRealTime()->MinTime(2.0);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  tosec::eval::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  const double floor_rt = reporter.ns_per_iter("BM_EventfdPingPongFloor/min_time:2.000/real_time");
  std::printf("\nOne hop between two processes, same run (floor: plain eventfd ping-pong)\n");
  std::printf("%-22s %10s %12s\n", "mode", "hop (ns)", "vs floor");
  if (floor_rt > 0) std::printf("%-22s %10.0f %12s\n", "eventfd floor", floor_rt / 2, "1.00x");
  for (const char* mode : {"Sleep", "Adaptive", "Spin"}) {
    const double rt =
        reporter.ns_per_iter(std::string("BM_RingHop_") + mode + "/min_time:2.000/real_time");
    if (rt <= 0) continue;
    if (floor_rt > 0) {
      std::printf("%-22s %10.0f %11.2fx\n", (std::string("ring, ") + mode).c_str(), rt / 2,
                  rt / floor_rt);
    } else {
      std::printf("%-22s %10.0f %12s\n", (std::string("ring, ") + mode).c_str(), rt / 2, "n/a");
    }
  }
  benchmark::Shutdown();
  return 0;
}
