#include "fd_table.h"

#include <sys/mman.h>

#include <cstdlib>

namespace tosec::guest {

FdTable::FdTable() {
  // 8 MiB of address space, touched (and so backed) only where fds are used.
  void* p = mmap(nullptr, sizeof(std::atomic<std::uint64_t>) * kMaxFd, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) std::abort();  // at load time: nothing sensible to fall back to
  e_ = static_cast<std::atomic<std::uint64_t>*>(p);
}

FdTable::~FdTable() { munmap(e_, sizeof(std::atomic<std::uint64_t>) * kMaxFd); }

FdTable::Lookup FdTable::get(int fd) const {
  if (fd < 0 || fd >= kMaxFd) return {Kind::kKernel, {}};
  const std::uint64_t v = e_[fd].load(std::memory_order_acquire);
  if (v == 0) return {Kind::kUnknown, {}};
  if (v == 1) return {Kind::kKernel, {}};
  return {
      Kind::kOffloaded,
      {static_cast<std::uint32_t>((v & 0xFFFF'FFFFU) >> 2), static_cast<std::uint32_t>(v >> 32)}};
}

void FdTable::set_offloaded(int fd, SocketRef ref) {
  if (fd < 0 || fd >= kMaxFd) return;
  e_[fd].store(encode(ref), std::memory_order_release);
  int h = high_.load(std::memory_order_relaxed);
  while (fd + 1 > h && !high_.compare_exchange_weak(h, fd + 1, std::memory_order_relaxed)) {
  }
}

void FdTable::set_kernel(int fd) {
  if (fd < 0 || fd >= kMaxFd) return;
  e_[fd].store(1, std::memory_order_release);
  int h = high_.load(std::memory_order_relaxed);
  while (fd + 1 > h && !high_.compare_exchange_weak(h, fd + 1, std::memory_order_relaxed)) {
  }
}

void FdTable::forget(int fd) {
  if (fd < 0 || fd >= kMaxFd) return;
  e_[fd].store(0, std::memory_order_release);
}

void FdTable::copy(int from, int to) {
  if (to < 0 || to >= kMaxFd) return;
  if (from < 0 || from >= kMaxFd) {
    forget(to);
    return;
  }
  const std::uint64_t v = e_[from].load(std::memory_order_acquire);
  if (v >= 2) {
    const Lookup l = get(from);
    set_offloaded(to, l.ref);
  } else {
    e_[to].store(v, std::memory_order_release);
  }
}

void FdTable::clear() {
  const int h = high_.load(std::memory_order_relaxed);
  for (int i = 0; i < h; ++i) e_[i].store(0, std::memory_order_relaxed);
}

FdTable& fd_table() {
  static FdTable* t = new FdTable();  // never destroyed: interposed calls may run at exit
  return *t;
}

}  // namespace tosec::guest
