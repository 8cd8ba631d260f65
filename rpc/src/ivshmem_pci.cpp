// IvshmemPci: BAR0/BAR2 through sysfs resource files, doorbells, waiting on a vector.
#include "tosec/rpc/ivshmem_pci.h"

#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace tosec::rpc {

const char* to_string(IvshmemIrqBackend b) {
  switch (b) {
    case IvshmemIrqBackend::kAuto:
      return "auto";
    case IvshmemIrqBackend::kVfio:
      return "vfio";
    case IvshmemIrqBackend::kUio:
      return "uio";
    case IvshmemIrqBackend::kPoll:
      return "poll";
  }
  return "?";
}

std::optional<IvshmemIrqBackend> parse_irq_backend(const std::string& s) {
  for (auto b : {IvshmemIrqBackend::kAuto, IvshmemIrqBackend::kVfio, IvshmemIrqBackend::kUio,
                 IvshmemIrqBackend::kPoll}) {
    if (s == to_string(b)) return b;
  }
  return std::nullopt;
}

namespace {

Result<ShmMapping> map_resource(const IvshmemPciDevice& dev, unsigned bar, std::uint64_t size) {
  const std::string path = dev.sysfs_dir + "/resource" + std::to_string(bar);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return errno_error("open(" + path + ")");
  auto m = ShmMapping::map(fd.get(), size);
  if (!m) return Error{m.error().code, path + ": " + m.error().message};
  return m;
}

}  // namespace

Status IvshmemPci::map_sysfs_bars(const IvshmemPciDevice& dev) {
  auto b0 = map_resource(dev, 0, dev.bar0_size);
  if (!b0) return b0.error();
  auto b2 = map_resource(dev, 2, dev.bar2_size);
  if (!b2) return b2.error();
  bar0_ = std::move(*b0);
  bar2_ = std::move(*b2);
  return {};
}

Result<IvshmemPci> IvshmemPci::open(const IvshmemPciDevice& dev, const IvshmemPciOptions& opt) {
  if (opt.vectors == 0 || opt.vectors > 256) {
    return Error{EINVAL, "ivshmem " + dev.bdf + ": vectors must be 1..256, got " +
                             std::to_string(opt.vectors)};
  }
  IvshmemPci p;
  p.poll_interval_ns_ = opt.poll_interval_ns > 0 ? opt.poll_interval_ns : 1'000'000;
  // The BARs are mapped through sysfs before VFIO claims the device: mapping resourceN is refused
  // once a driver holds the BAR regions busy (CONFIG_IO_STRICT_DEVMEM), existing mappings stay.
  if (auto s = p.map_sysfs_bars(dev); !s) return s.error();
  switch (opt.backend) {
    case IvshmemIrqBackend::kVfio:
      if (auto s = p.open_vfio(dev, opt); !s) return s.error();
      p.backend_ = IvshmemIrqBackend::kVfio;
      break;
    case IvshmemIrqBackend::kUio:
      if (auto s = p.open_uio(dev, opt); !s) return s.error();
      p.backend_ = IvshmemIrqBackend::kUio;
      break;
    case IvshmemIrqBackend::kPoll:
      p.backend_ = IvshmemIrqBackend::kPoll;
      break;
    case IvshmemIrqBackend::kAuto:
      // UIO is never chosen here: ivshmem-doorbell has no INTx, a UIO wait would never wake.
      if (auto s = p.open_vfio(dev, opt); s) {
        p.backend_ = IvshmemIrqBackend::kVfio;
      } else {
        p.backend_ = IvshmemIrqBackend::kPoll;
        p.fallback_reason_ = s.message();
        p.container_.reset();
        p.group_.reset();
        p.device_.reset();
        p.own_.clear();
      }
      break;
  }
  return p;
}

IvshmemPci::~IvshmemPci() = default;

PeerId IvshmemPci::self() const {
  const auto* reg =
      reinterpret_cast<const volatile std::uint32_t*>(bar0_.data() + kIvshmemRegIvPosition);
  return static_cast<PeerId>(*reg);
}

int IvshmemPci::own_fd(Vector vector) const {
  return vector < own_.size() ? own_[vector].get() : -1;
}

Status IvshmemPci::ring(PeerId peer, Vector vector) {
  if (!bar0_.valid()) return Error{EBADF, "ivshmem: BAR0 not mapped"};
  auto* reg = reinterpret_cast<volatile std::uint32_t*>(bar0_.data() + kIvshmemRegDoorbell);
  *reg = ivshmem_doorbell_value(peer, vector);
  return {};
}

Result<bool> IvshmemPci::wait(Vector vector, std::int64_t timeout_ns) {
  if (backend_ == IvshmemIrqBackend::kPoll) {
    // No interrupt to wait for: sleep one interval and report a possible ring; the caller
    // (rpc::Waiter) re-checks the shared-memory state it waits for and counts a miss as spurious.
    std::int64_t ns = poll_interval_ns_;
    if (timeout_ns >= 0 && timeout_ns < ns) ns = timeout_ns;
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return true;
  }
  const int fd = own_fd(vector);
  if (fd < 0) {
    return Error{ENOENT, "ivshmem: no interrupt fd for vector " + std::to_string(vector) +
                             " (backend " + to_string(backend_) + ")"};
  }
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts = {static_cast<time_t>(timeout_ns / 1'000'000'000),
          static_cast<long>(timeout_ns % 1'000'000'000)};
    tsp = &ts;
  }
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    const int n = ::ppoll(&p, 1, tsp, nullptr);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("ivshmem: ppoll");
    if (n == 0) return false;
    break;
  }
  if (backend_ == IvshmemIrqBackend::kUio) {
    // UIO: a 32-bit interrupt count; writing 1 re-enables the (INTx) interrupt.
    std::uint32_t count = 0;
    if (::read(fd, &count, sizeof count) < 0 && errno != EAGAIN) return errno_error("uio: read");
    const std::uint32_t on = 1;
    if (::write(fd, &on, sizeof on) < 0) return errno_error("uio: write");
    return true;
  }
  std::uint64_t count = 0;
  if (::read(fd, &count, sizeof count) < 0 && errno != EAGAIN) {
    return errno_error("ivshmem: eventfd read");
  }
  return true;
}

}  // namespace tosec::rpc
