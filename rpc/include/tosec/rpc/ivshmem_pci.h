// VM mode: the ivshmem-doorbell PCI device seen from inside a Linux guest.
//
// Inside a VM the region is BAR2 of the device and the doorbells are its BAR0 registers, so a
// VM peer does what IvshmemClient does for a process peer, through sysfs instead of a socket:
//
//   auto dev = select_ivshmem_device({.index = 0});            // 1af4:1110 under /sys
//   auto pci = IvshmemPci::open(*dev, {.vectors = 2});          // BARs mapped, interrupts set up
//   pci->region();  pci->self();                                // BAR2, IVPosition
//   pci->ring(peer, 1);                                         // Doorbell register
//   pci->wait(0, timeout_ns);  poll(pci->own_fd(0))             // MSI-X vector 0
//
// Interrupt backends (docs/ivshmem-protocol.md "Inside a VM", decision 0009), tried in order:
//  - VFIO: the device is bound to vfio-pci and each MSI-X vector gets an eventfd
//    (VFIO_DEVICE_SET_IRQS), the only way user space receives ivshmem-doorbell interrupts. The
//    group is a no-IOMMU one if the kernel has CONFIG_VFIO_NOIOMMU (Debian's has not), else a
//    real one behind a virtual IOMMU (QEMU intel-iommu, guest intel_iommu=on).
//  - UIO (uio_pci_generic): INTx only. ivshmem-doorbell raises MSI-X only, so under QEMU 7.2 a
//    UIO wait never fires; selectable explicitly (to show it), never chosen automatically.
//  - Polling: no interrupt at all. A poll-mode wait() sleeps one poll interval and reports a
//    possible ring, so the caller re-checks its shared-memory state (rpc::Waiter does).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/shm_mapping.h"
#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::rpc {

inline constexpr std::uint16_t kIvshmemVendor = 0x1af4;
inline constexpr std::uint16_t kIvshmemDevice = 0x1110;

// BAR0 register offsets (32-bit, little-endian).
inline constexpr std::size_t kIvshmemRegIntrMask = 0;
inline constexpr std::size_t kIvshmemRegIntrStatus = 4;
inline constexpr std::size_t kIvshmemRegIvPosition = 8;
inline constexpr std::size_t kIvshmemRegDoorbell = 12;
inline constexpr std::uint64_t kIvshmemBar0MinSize = 16;

// The Doorbell register value that rings `vector` of `peer`. QEMU uses only the low 8 bits of
// the vector field.
constexpr std::uint32_t ivshmem_doorbell_value(PeerId peer, Vector vector) {
  return (static_cast<std::uint32_t>(peer) << 16) | (vector & 0xffU);
}

// One ivshmem PCI function found in sysfs.
struct IvshmemPciDevice {
  std::string bdf;          // "0000:00:04.0"
  std::string sysfs_dir;    // <root>/bus/pci/devices/<bdf>
  std::uint64_t bar0_size;  // registers
  std::uint64_t bar2_size;  // the shared region (a power of two)
  std::string driver;       // bound driver ("vfio-pci", "uio_pci_generic"), empty if none
};

// Every 1af4:1110 function under `sysfs_root` (default "/sys"), ordered by BDF. Functions with
// another id are skipped; an ivshmem function whose vendor/device/resource files are malformed is
// an error naming the file. An absent bus/pci/devices directory is an error (no PCI in sysfs).
Result<std::vector<IvshmemPciDevice>> find_ivshmem_devices(const std::string& sysfs_root = "/sys");

struct IvshmemSelector {
  std::string sysfs_root = "/sys";
  std::optional<std::string> bdf =
      std::nullopt;    // exact BDF ("0000:00:04.0"; "00:04.0" means domain 0000)
  unsigned index = 0;  // without bdf: the index-th device in BDF order
};
// The device selected, or ENODEV naming what was looked for and what was found.
Result<IvshmemPciDevice> select_ivshmem_device(const IvshmemSelector& sel);

enum class IvshmemIrqBackend { kAuto, kVfio, kUio, kPoll };
const char* to_string(IvshmemIrqBackend b);
// "auto", "vfio", "uio", "poll"; nullopt otherwise.
std::optional<IvshmemIrqBackend> parse_irq_backend(const std::string& s);

struct IvshmemPciOptions {
  unsigned vectors = 1;  // MSI-X vectors used (must not exceed the device's)
  IvshmemIrqBackend backend = IvshmemIrqBackend::kAuto;
  std::string sysfs_root = "/sys";
  std::string dev_root = "/dev";              // for vfio/ and uioN
  std::int64_t poll_interval_ns = 1'000'000;  // poll backend: how long one wait() sleeps
};

// A VM peer's view of the device: region, own id, doorbells. Move-only. Not thread-safe for
// wait() on one vector from two threads; ring() may be called from any thread.
class IvshmemPci final : public DoorbellRinger, public DoorbellWaiter {
 public:
  // Maps BAR0 and BAR2 and sets up interrupts with the chosen backend. With kAuto, VFIO is tried
  // and, if it is unavailable, polling is used; why VFIO was not used is kept in fallback_reason().
  static Result<IvshmemPci> open(const IvshmemPciDevice& dev, const IvshmemPciOptions& opt);

  IvshmemPci(IvshmemPci&&) noexcept = default;
  IvshmemPci& operator=(IvshmemPci&&) noexcept = default;
  ~IvshmemPci() override;

  const ShmMapping& region() const { return bar2_; }
  PeerId self() const;  // IVPosition, read from BAR0
  IvshmemIrqBackend backend() const { return backend_; }
  const std::string& fallback_reason() const { return fallback_reason_; }
  // How the backend got the interrupts: "vfio noiommu group 0", "vfio type1 group 3", "uio0".
  const std::string& backend_detail() const { return detail_; }
  unsigned vectors() const { return static_cast<unsigned>(own_.size()); }

  // Eventfd (VFIO) or /dev/uioN fd (UIO, vector 0 only) of our vector, for poll/epoll;
  // -1 with the poll backend or for an unknown vector.
  int own_fd(Vector vector) const;

  // Writes the Doorbell register. Any (peer, vector) is accepted: the device gives no feedback,
  // a ring to an absent peer is silently dropped by QEMU.
  Status ring(PeerId peer, Vector vector) override;
  // VFIO/UIO: blocks until the vector's interrupt or the timeout. Poll backend: sleeps
  // min(timeout, poll_interval) and returns true ("maybe rung"): the caller re-checks its state.
  Result<bool> wait(Vector vector, std::int64_t timeout_ns) override;

 private:
  IvshmemPci() = default;
  Status open_vfio(const IvshmemPciDevice& dev, const IvshmemPciOptions& opt);
  Status open_uio(const IvshmemPciDevice& dev, const IvshmemPciOptions& opt);
  Status map_sysfs_bars(const IvshmemPciDevice& dev);

  IvshmemIrqBackend backend_ = IvshmemIrqBackend::kPoll;
  std::string fallback_reason_;
  std::string detail_;
  std::int64_t poll_interval_ns_ = 1'000'000;
  ShmMapping bar0_;
  ShmMapping bar2_;
  UniqueFd container_, group_, device_;  // VFIO
  std::vector<UniqueFd> own_;            // one per vector (VFIO eventfds, UIO fd at [0])
};

// Binds the PCI function to `driver` through driver_override (unbinding its current driver) and
// waits for the bind to show in sysfs. No-op if already bound to it.
Status bind_pci_driver(const IvshmemPciDevice& dev, const std::string& driver,
                       const std::string& sysfs_root);

}  // namespace tosec::rpc
