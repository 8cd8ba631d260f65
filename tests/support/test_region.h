// Test helper: an anonymous, page-aligned shared mapping that survives fork(), so the same
// region can be used by threads or by parent and child processes.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <span>
#include <stdexcept>

namespace tosec::test {

class SharedBuffer {
 public:
  explicit SharedBuffer(std::size_t size) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<std::byte*>(p);
  }
  ~SharedBuffer() { ::munmap(base_, size_); }
  SharedBuffer(const SharedBuffer&) = delete;
  SharedBuffer& operator=(const SharedBuffer&) = delete;
  std::span<std::byte> bytes() const { return {base_, size_}; }
  std::byte* data() const { return base_; }

 private:
  std::byte* base_;
  std::size_t size_;
};

}  // namespace tosec::test
