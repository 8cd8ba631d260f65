#include "shm_backing.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <utility>

#include "tosec/rpc/shm_mapping.h"

namespace tosec::host {

using rpc::Error;
using rpc::Result;
using rpc::UniqueFd;

namespace {

// QEMU's ivshmem-server stops doubling at the largest huge page size.
constexpr std::uint64_t kMaxHugePage = std::uint64_t{1} << 30;

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

std::uint64_t round_up_pow2(std::uint64_t v) { return v <= 1 ? 1 : std::bit_ceil(v); }

Result<ShmBacking> ShmBacking::create(ShmFlag flag, const std::string& arg, std::uint64_t size) {
  if (size == 0) return Error{EINVAL, "shared memory size must not be 0"};
  size = round_up_pow2(size);
  ShmBacking b;
  if (flag == ShmFlag::kNameOrDirectory && is_directory(arg)) {
    Result<UniqueFd> fd = Error{EINVAL, ""};
    std::uint64_t s = size;
    for (; s <= std::max(size, kMaxHugePage); s *= 2) {
      fd = rpc::create_shm_in_dir(arg, s);
      if (fd) break;
      if (s == size && fd.error().code != EINVAL) break;  // not a sizing problem: report it
    }
    if (!fd) {
      return Error{fd.error().code, "cannot create " + std::to_string(size) +
                                        "-byte shared memory in directory " + arg + ": " +
                                        fd.error().message};
    }
    b.fd_ = std::move(*fd);
    b.size_ = s;
    b.description_ = "file in " + arg;
    return b;
  }
  const std::string name = arg.starts_with('/') ? arg : "/" + arg;
  if (name.size() < 2 || name.find('/', 1) != std::string::npos || name.size() > 255) {
    return Error{EINVAL, "'" + arg + "' is neither an existing directory nor a valid POSIX shm " +
                             "name (one path component, like 'ivshmem' or '/tosec-g0')"};
  }
  // Find out whether we create the object, to know whether it is ours to unlink.
  UniqueFd excl(::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  const bool created = excl.valid();
  if (!created && errno != EEXIST) return rpc::errno_error("shm_open(" + name + ")");
  auto fd = rpc::create_posix_shm(name, size);
  if (!fd) {
    if (created) ::shm_unlink(name.c_str());
    return fd.error();
  }
  b.fd_ = std::move(*fd);
  b.size_ = size;
  if (created) b.unlink_name_ = name;
  b.description_ = "POSIX shm " + name + (created ? " (created)" : " (existing)");
  return b;
}

ShmBacking::ShmBacking(ShmBacking&& o) noexcept
    : fd_(std::move(o.fd_)),
      size_(o.size_),
      unlink_name_(std::exchange(o.unlink_name_, {})),
      description_(std::move(o.description_)) {}

ShmBacking& ShmBacking::operator=(ShmBacking&& o) noexcept {
  if (this != &o) {
    if (!unlink_name_.empty()) ::shm_unlink(unlink_name_.c_str());
    fd_ = std::move(o.fd_);
    size_ = o.size_;
    unlink_name_ = std::exchange(o.unlink_name_, {});
    description_ = std::move(o.description_);
  }
  return *this;
}

ShmBacking::~ShmBacking() {
  if (!unlink_name_.empty()) ::shm_unlink(unlink_name_.c_str());
}

}  // namespace tosec::host
