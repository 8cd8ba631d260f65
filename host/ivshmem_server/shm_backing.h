// The shared memory an ivshmem server hands to its peers, created from QEMU-style flags.
//
//  -M NAME : POSIX shm object NAME (/dev/shm/NAME). Unlinked on shutdown only if this server
//            created it, so an object provisioned by someone else survives us.
//  -m ARG  : QEMU means a directory (e.g. a hugetlbfs mount) to create an anonymous file in; our
//            older docs said `-m shm-name`. If ARG is an existing directory it is used as one,
//            otherwise ARG is taken as a POSIX shm name.
//
// Sizes are rounded up to a power of two, as QEMU's ivshmem-server does, because the device's
// BAR2 must be one. In a directory, if the file cannot be sized (hugetlbfs wants whole huge
// pages), doubling sizes are tried up to 1 GiB, again like QEMU.
#pragma once

#include <cstdint>
#include <string>

#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::host {

enum class ShmFlag { kPosixName, kNameOrDirectory };  // -M, -m

class ShmBacking {
 public:
  static rpc::Result<ShmBacking> create(ShmFlag flag, const std::string& arg, std::uint64_t size);

  ShmBacking(ShmBacking&& o) noexcept;
  ShmBacking& operator=(ShmBacking&& o) noexcept;
  ShmBacking(const ShmBacking&) = delete;
  ShmBacking& operator=(const ShmBacking&) = delete;
  ~ShmBacking();  // shm_unlink()s the object if we created it

  // Hands the fd over (to IvshmemServer); the unlink duty stays here.
  rpc::UniqueFd take_fd() { return std::move(fd_); }
  std::uint64_t size() const { return size_; }
  bool created() const { return !unlink_name_.empty(); }
  // "POSIX shm /ivshmem (created)" or "file in /dev/hugepages", for logs.
  const std::string& description() const { return description_; }

 private:
  ShmBacking() = default;
  rpc::UniqueFd fd_;
  std::uint64_t size_ = 0;
  std::string unlink_name_;
  std::string description_;
};

// Smallest power of two >= v (v >= 1).
std::uint64_t round_up_pow2(std::uint64_t v);

}  // namespace tosec::host
