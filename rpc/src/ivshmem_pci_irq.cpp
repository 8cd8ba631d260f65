// Interrupt backends of IvshmemPci: VFIO no-IOMMU (MSI-X vectors as eventfds) and UIO (INTx).
#include <dirent.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "ivshmem_pci_internal.h"
#include "tosec/rpc/ivshmem_pci.h"

namespace tosec::rpc {

namespace {

Error vfio_error(const IvshmemPciDevice& dev, const std::string& what) {
  Error e = errno_error(what);
  e.message = "vfio " + dev.bdf + ": " + e.message;
  return e;
}

// MSI-X only reaches the guest's interrupt controller if the function may master the bus: QEMU
// sends MSI messages through the device's bus-master address space, which is disabled otherwise,
// and vfio-pci does not set the bit itself (DPDK does the same).
Status enable_bus_master(int device, const IvshmemPciDevice& dev) {
  vfio_region_info cfg{};
  cfg.argsz = sizeof cfg;
  cfg.index = VFIO_PCI_CONFIG_REGION_INDEX;
  if (::ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &cfg) != 0) {
    return vfio_error(dev, "VFIO_DEVICE_GET_REGION_INFO(config)");
  }
  std::uint16_t cmd = 0;
  const auto off = static_cast<off_t>(cfg.offset + 4);  // PCI_COMMAND
  if (::pread(device, &cmd, sizeof cmd, off) != sizeof cmd) return vfio_error(dev, "read COMMAND");
  cmd |= 0x4;  // PCI_COMMAND_MASTER
  if (::pwrite(device, &cmd, sizeof cmd, off) != sizeof cmd) {
    return vfio_error(dev, "write COMMAND");
  }
  return {};
}

}  // namespace

Status IvshmemPci::open_vfio(const IvshmemPciDevice& dev, const IvshmemPciOptions& opt) {
  const std::string vfio_dir = opt.dev_root + "/vfio";
  if (::access((vfio_dir + "/vfio").c_str(), F_OK) != 0) {
    return vfio_error(dev, "access(" + vfio_dir + "/vfio) (vfio module not loaded?)");
  }
  if (auto s = bind_pci_driver(dev, "vfio-pci", opt.sysfs_root); !s) return s;
  const std::string group = iommu_group(dev.sysfs_dir);
  if (group.empty()) {
    return Error{ENODEV, "vfio " + dev.bdf + ": no iommu_group link under " + dev.sysfs_dir +
                             " (no IOMMU: boot with intel_iommu=on on a VM with intel-iommu, "
                             "or vfio enable_unsafe_noiommu_mode=1)"};
  }
  container_.reset(::open((vfio_dir + "/vfio").c_str(), O_RDWR | O_CLOEXEC));
  if (!container_.valid()) return vfio_error(dev, "open(" + vfio_dir + "/vfio)");
  if (::ioctl(container_.get(), VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
    return Error{EPROTO, "vfio " + dev.bdf + ": unknown VFIO API version"};
  }
  // Two ways to own the device: no-IOMMU mode (group "noiommu-N"; needs a kernel built with
  // CONFIG_VFIO_NOIOMMU, which Debian's is not) or a (virtual) IOMMU, e.g. QEMU's intel-iommu with
  // intel_iommu=on (group "N", type1). Either way only interrupts are used, never DMA, so the
  // type1 container needs no mappings.
  std::string group_path = vfio_dir + "/noiommu-" + group;
  unsigned long iommu_type = VFIO_NOIOMMU_IOMMU;
  if (::access(group_path.c_str(), F_OK) != 0) {
    group_path = vfio_dir + "/" + group;
    iommu_type = VFIO_TYPE1v2_IOMMU;
    if (::access(group_path.c_str(), F_OK) != 0) {
      return Error{ENODEV, "vfio " + dev.bdf + ": neither " + vfio_dir + "/noiommu-" + group +
                               " nor " + group_path +
                               " (no IOMMU and no no-IOMMU mode: give the VM an intel-iommu "
                               "and boot with intel_iommu=on)"};
    }
  }
  if (::ioctl(container_.get(), VFIO_CHECK_EXTENSION, iommu_type) <= 0) {
    return Error{
        ENOTSUP,
        "vfio " + dev.bdf + ": container lacks IOMMU type " + std::to_string(iommu_type) +
            (iommu_type == VFIO_NOIOMMU_IOMMU ? " (no-IOMMU: vfio enable_unsafe_noiommu_mode=1)"
                                              : " (type1: load vfio_iommu_type1)")};
  }
  group_.reset(::open(group_path.c_str(), O_RDWR | O_CLOEXEC));
  if (!group_.valid()) return vfio_error(dev, "open(" + group_path + ")");
  vfio_group_status st{};
  st.argsz = sizeof st;
  if (::ioctl(group_.get(), VFIO_GROUP_GET_STATUS, &st) != 0) {
    return vfio_error(dev, "VFIO_GROUP_GET_STATUS");
  }
  if ((st.flags & VFIO_GROUP_FLAGS_VIABLE) == 0) {
    return Error{EBUSY, "vfio " + dev.bdf + ": group " + group +
                            " not viable (another device of the group has a host driver)"};
  }
  int cfd = container_.get();
  if (::ioctl(group_.get(), VFIO_GROUP_SET_CONTAINER, &cfd) != 0) {
    return vfio_error(dev, "VFIO_GROUP_SET_CONTAINER");
  }
  if (::ioctl(container_.get(), VFIO_SET_IOMMU, iommu_type) != 0) {
    return vfio_error(dev, "VFIO_SET_IOMMU(" + std::to_string(iommu_type) + ")");
  }
  device_.reset(::ioctl(group_.get(), VFIO_GROUP_GET_DEVICE_FD, dev.bdf.c_str()));
  if (!device_.valid()) return vfio_error(dev, "VFIO_GROUP_GET_DEVICE_FD");
  vfio_irq_info irq{};
  irq.argsz = sizeof irq;
  irq.index = VFIO_PCI_MSIX_IRQ_INDEX;
  if (::ioctl(device_.get(), VFIO_DEVICE_GET_IRQ_INFO, &irq) != 0) {
    return vfio_error(dev, "VFIO_DEVICE_GET_IRQ_INFO(MSI-X)");
  }
  if (irq.count < opt.vectors) {
    return Error{EINVAL, "vfio " + dev.bdf + ": device has " + std::to_string(irq.count) +
                             " MSI-X vectors, " + std::to_string(opt.vectors) +
                             " requested (QEMU vectors=)"};
  }
  if (auto s = enable_bus_master(device_.get(), dev); !s) return s;
  own_.clear();
  std::vector<std::int32_t> fds;
  for (unsigned v = 0; v < opt.vectors; ++v) {
    auto efd = make_eventfd();
    if (!efd) return efd.error();
    fds.push_back(efd->get());
    own_.push_back(std::move(*efd));
  }
  std::vector<std::byte> buf(sizeof(vfio_irq_set) + fds.size() * sizeof(std::int32_t));
  auto* set = reinterpret_cast<vfio_irq_set*>(buf.data());
  set->argsz = static_cast<std::uint32_t>(buf.size());
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = VFIO_PCI_MSIX_IRQ_INDEX;
  set->start = 0;
  set->count = static_cast<std::uint32_t>(fds.size());
  std::memcpy(set->data, fds.data(), fds.size() * sizeof(std::int32_t));
  if (::ioctl(device_.get(), VFIO_DEVICE_SET_IRQS, set) != 0) {
    return vfio_error(dev, "VFIO_DEVICE_SET_IRQS(MSI-X)");
  }
  detail_ = std::string("vfio ") + (iommu_type == VFIO_NOIOMMU_IOMMU ? "noiommu" : "type1") +
            " group " + group;
  return {};
}

Status IvshmemPci::open_uio(const IvshmemPciDevice& dev, const IvshmemPciOptions& opt) {
  if (auto s = bind_pci_driver(dev, "uio_pci_generic", opt.sysfs_root); !s) return s;
  const std::string uio_dir = dev.sysfs_dir + "/uio";
  DIR* d = ::opendir(uio_dir.c_str());
  if (d == nullptr) return errno_error("opendir(" + uio_dir + ")");
  std::string name;
  while (auto* e = ::readdir(d)) {
    if (std::strncmp(e->d_name, "uio", 3) == 0) name = e->d_name;
  }
  ::closedir(d);
  if (name.empty()) return Error{ENODEV, uio_dir + ": no uioN entry"};
  const std::string path = opt.dev_root + "/" + name;
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return errno_error("open(" + path + ")");
  const std::uint32_t on = 1;  // unmask INTx (uio_pci_generic's irqcontrol)
  if (::write(fd.get(), &on, sizeof on) < 0) {
    // Verified with QEMU 7.2: ivshmem-doorbell has no INTx pin, uio_pci_generic binds with "No IRQ
    // assigned to device" and refuses irqcontrol with EIO. Its doorbells are MSI-X only.
    if (errno == EIO) {
      return Error{EIO, path + ": " + dev.bdf +
                            " has no INTx interrupt (ivshmem-doorbell raises MSI-X only): UIO "
                            "cannot deliver its doorbells, use vfio or poll"};
    }
    return errno_error("write(" + path + ", enable)");
  }
  own_.clear();
  own_.push_back(std::move(fd));
  detail_ = name;
  return {};
}

}  // namespace tosec::rpc
