// FdTable: fd number -> offloaded socket {id, generation}, or "kernel fd", or "unknown".
//
// One atomic word per fd number (lock-free reads on every read()/write() the shim sees):
//   0                 unknown: never seen, or its number was closed/reused since. The caller
//                     resolves it (after exec: by the inode of A, see decision 0004 point 7)
//   1                 a kernel fd (negative cache)
//   gen<<32 | id<<2|2 an offloaded socket
// Numbers >= kMaxFd are always kernel fds (never offloaded: socket() hands such a placeholder
// back to the kernel path). Entries are process-local; fork copies them, exec clears them.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>

namespace tosec::guest {

struct SocketRef {
  std::uint32_t id;
  std::uint32_t generation;
  bool operator==(const SocketRef&) const = default;
};

class FdTable {
 public:
  static constexpr int kMaxFd = 1 << 20;
  enum class Kind { kUnknown, kKernel, kOffloaded };

  struct Lookup {
    Kind kind;
    SocketRef ref;
  };

  FdTable();
  ~FdTable();
  FdTable(const FdTable&) = delete;
  FdTable& operator=(const FdTable&) = delete;

  Lookup get(int fd) const;
  void set_offloaded(int fd, SocketRef ref);
  void set_kernel(int fd);
  void forget(int fd);  // back to unknown (closed or reused behind our back)
  // Copies fd `from`'s entry to `to` (dup2/dup3/F_DUPFD).
  void copy(int from, int to);
  // Highest fd number ever given an entry + 1 (bounds close_range scans).
  int high_water() const { return high_.load(std::memory_order_relaxed); }
  // Forgets every entry (tests; exec is implicit).
  void clear();

  static std::uint64_t encode(SocketRef r) {
    return (std::uint64_t{r.generation} << 32) | (std::uint64_t{r.id} << 2) | 2U;
  }

 private:
  std::atomic<std::uint64_t>* e_;
  std::atomic<int> high_{0};
};

// The process's table.
FdTable& fd_table();

}  // namespace tosec::guest
