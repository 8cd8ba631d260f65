#include "tosec/rpc/shm_mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

namespace tosec::rpc {

namespace {
Status size_fd(int fd, std::uint64_t size, const std::string& what) {
  if (::ftruncate(fd, static_cast<off_t>(size)) < 0) {
    return errno_error("ftruncate(" + what + ", " + std::to_string(size) + ")");
  }
  return {};
}
}  // namespace

Result<UniqueFd> create_posix_shm(const std::string& name, std::uint64_t size) {
  const std::string n = name.starts_with('/') ? name : "/" + name;
  UniqueFd fd(::shm_open(n.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return errno_error("shm_open(" + n + ")");
  if (auto s = size_fd(fd.get(), size, n); !s) return s.error();
  return fd;
}

Result<UniqueFd> create_shm_in_dir(const std::string& dir, std::uint64_t size) {
  std::string path = dir + "/ivshmem.XXXXXX";
  UniqueFd fd(::mkostemp(path.data(), O_CLOEXEC));
  if (!fd.valid()) return errno_error("mkstemp(" + path + ")");
  ::unlink(path.c_str());  // anonymous from now on: the fd keeps it alive
  if (auto s = size_fd(fd.get(), size, path); !s) return s.error();
  return fd;
}

Result<std::uint64_t> fd_size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return errno_error("fstat(shm fd)");
  return static_cast<std::uint64_t>(st.st_size);
}

Result<ShmMapping> ShmMapping::map(int fd, std::uint64_t size) {
  if (size == 0) {
    auto s = fd_size(fd);
    if (!s) return s.error();
    size = *s;
  }
  if (size == 0) return Error{EINVAL, "mmap: shared memory file is empty"};
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno_error("mmap(" + std::to_string(size) + " bytes)");
  return ShmMapping(static_cast<std::byte*>(p), static_cast<std::size_t>(size));
}

ShmMapping::ShmMapping(ShmMapping&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)) {}

ShmMapping& ShmMapping::operator=(ShmMapping&& o) noexcept {
  if (this != &o) {
    unmap();
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

ShmMapping::~ShmMapping() { unmap(); }

void ShmMapping::unmap() {
  if (base_ != nullptr) ::munmap(base_, size_);
  base_ = nullptr;
  size_ = 0;
}

}  // namespace tosec::rpc
