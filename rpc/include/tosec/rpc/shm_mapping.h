// Shared-memory files and their mappings.
//
// In process mode a region is a POSIX shm object (/dev/shm) or a file in a hugetlbfs directory;
// in VM mode it is BAR2 of the ivshmem PCI device. Either way every role sees it as an fd plus a
// size, mapped MAP_SHARED at whatever address the kernel picks. Nothing in a region may depend
// on that address: areas are located by offsets (see region.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::rpc {

// Creates (or opens, if it exists) the POSIX shm object `name` ("/tosec-g0" or "tosec-g0") and
// sizes it to `size` bytes. An existing object of another size is resized.
Result<UniqueFd> create_posix_shm(const std::string& name, std::uint64_t size);

// Creates an anonymous (already unlinked) file of `size` bytes in directory `dir`, e.g. a
// hugetlbfs mount; mirrors QEMU ivshmem-server's `-m DIR`.
Result<UniqueFd> create_shm_in_dir(const std::string& dir, std::uint64_t size);

// Size of the file behind `fd` (fstat).
Result<std::uint64_t> fd_size(int fd);

// A MAP_SHARED read/write mapping; unmapped on destruction. Move-only.
class ShmMapping {
 public:
  ShmMapping() = default;
  // Maps `size` bytes of `fd` from offset 0. `size` 0 means "the whole file".
  static Result<ShmMapping> map(int fd, std::uint64_t size = 0);

  ShmMapping(ShmMapping&& o) noexcept;
  ShmMapping& operator=(ShmMapping&& o) noexcept;
  ShmMapping(const ShmMapping&) = delete;
  ShmMapping& operator=(const ShmMapping&) = delete;
  ~ShmMapping();

  std::byte* data() const { return base_; }
  std::size_t size() const { return size_; }
  std::span<std::byte> bytes() const { return {base_, size_}; }
  bool valid() const { return base_ != nullptr; }

 private:
  ShmMapping(std::byte* base, std::size_t size) : base_(base), size_(size) {}
  void unmap();
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace tosec::rpc
