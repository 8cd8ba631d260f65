// "The hot path must not allocate when nothing matches": after a stream direction is set up (its
// Hyperscan stream opened, its window grown to window_bytes), inspect() of benign payloads makes
// no heap allocation. Counted by replacing the global operator new in this test binary only
// (by the sanitizer's malloc hooks under ASan).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "ids_test_support.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// Under ASan, libraries already bound to the sanitizer's operator new would free through ours
// (alloc-dealloc mismatch), so count with the sanitizer's own hooks instead: these see every
// malloc too, Hyperscan's included.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             std::size_t),
                                                         void (*free_hook)(const volatile void*));
namespace {
void count_malloc(const volatile void*, std::size_t) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
}
void ignore_free(const volatile void*) {}
const int g_hooks_installed = __sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free);
}  // namespace
#else
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace tosec::svm::ids_test {
namespace {

TEST(IdsHotPath, BenignPayloadsDoNotAllocate) {
  EngineConfig cfg{"ids",
                   std::string(TOSEC_SOURCE_DIR) + "/examples/rules/ids.rules",
                   {{"window_bytes", "8192"}}};
  auto engine = make_ids_engine(cfg);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  auto thread = (*engine)->make_thread();
  ASSERT_TRUE(thread.ok());
  auto inspector = (*thread)->open_stream(client_stream());
  std::string payload;
  while (payload.size() < 1460) {
    payload += "GET /static/app.js?v=12&lang=en HTTP/1.1\r\nHost: shop.example\r\n\r\n";
  }
  payload.resize(1460);
  Payload p;
  p.bytes = std::as_bytes(std::span(payload.data(), payload.size()));
  const long at_start = g_allocations.load();
  for (int i = 0; i < 20; ++i) {  // warm-up: opens the stream, grows the window to 8 KiB
    ASSERT_TRUE(inspector->inspect(p).findings.empty());
    p.stream_offset += payload.size();
  }
  const long before = g_allocations.load();
  // The counter works: setting the direction up (window, Hyperscan stream) did allocate.
  EXPECT_GT(before - at_start, 0);
  for (int i = 0; i < 1000; ++i) {
    const Verdict v = inspector->inspect(p);
    ASSERT_TRUE(v.findings.empty());
    p.stream_offset += payload.size();
  }
  EXPECT_EQ(g_allocations.load() - before, 0);
}

}  // namespace
}  // namespace tosec::svm::ids_test
