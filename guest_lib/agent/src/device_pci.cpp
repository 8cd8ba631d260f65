// The pci device: the VM's ivshmem-doorbell function (rpc::IvshmemPci). Shims get an fd of
// sysfs resource2 to map BAR2 themselves (zero copy stays zero copy).
#include <fcntl.h>

#include "device_impl.h"
#include "tosec/rpc/ivshmem_pci.h"

namespace tosec::agent {

namespace {

class PciDevice final : public Device {
 public:
  PciDevice(rpc::IvshmemPciDevice dev, rpc::IvshmemPci pci)
      : dev_(std::move(dev)), pci_(std::move(pci)) {}

  std::span<std::byte> region() const override { return pci_.region().bytes(); }
  rpc::Result<rpc::UniqueFd> region_fd() const override {
    const std::string path = dev_.sysfs_dir + "/resource2";
    rpc::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd.valid()) return rpc::errno_error("open(" + path + ")");
    return fd;
  }
  rpc::PeerId self() const override { return pci_.self(); }
  unsigned vectors() const override { return pci_.vectors(); }
  int vector_fd(rpc::Vector v) const override {
    // UIO has one fd for everything: treat it as polling for the per-process vectors.
    if (pci_.backend() != rpc::IvshmemIrqBackend::kVfio) return -1;
    return pci_.own_fd(v);
  }
  rpc::Status ring(rpc::PeerId peer, rpc::Vector v) override { return pci_.ring(peer, v); }
  std::string describe() const override {
    std::string s = "pci " + dev_.bdf + " peer " + std::to_string(pci_.self()) + ", irq " +
                    rpc::to_string(pci_.backend());
    if (!pci_.backend_detail().empty()) s += " (" + pci_.backend_detail() + ")";
    if (!pci_.fallback_reason().empty()) s += "; no vfio: " + pci_.fallback_reason();
    return s;
  }

 private:
  rpc::IvshmemPciDevice dev_;
  rpc::IvshmemPci pci_;
};

}  // namespace

rpc::Result<std::unique_ptr<Device>> open_pci_device(unsigned index, unsigned vectors,
                                                     const std::string& irq) {
  rpc::IvshmemSelector sel;
  sel.index = index;
  auto dev = rpc::select_ivshmem_device(sel);
  if (!dev) return dev.error();
  rpc::IvshmemPciOptions opt;
  opt.vectors = vectors;
  auto backend = rpc::parse_irq_backend(irq);
  if (!backend || *backend == rpc::IvshmemIrqBackend::kUio) {
    return rpc::Error{EINVAL, "--irq '" + irq + "': expected auto, vfio or poll"};
  }
  opt.backend = *backend;
  auto pci = rpc::IvshmemPci::open(*dev, opt);
  if (!pci) return pci.error();
  return std::unique_ptr<Device>(std::make_unique<PciDevice>(std::move(*dev), std::move(*pci)));
}

rpc::Result<std::unique_ptr<Device>> open_device(const DeviceSpec& spec, unsigned vectors,
                                                 const std::string& irq) {
  if (spec.kind == DeviceSpec::Kind::kSocket) return open_process_device(spec.socket_path, vectors);
  return open_pci_device(spec.pci_index, vectors, irq);
}

}  // namespace tosec::agent
