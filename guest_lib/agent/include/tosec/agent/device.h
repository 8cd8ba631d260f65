// The agent's ivshmem peer: how tosec-guest-agent reaches the region and the TOE's doorbells.
//
// Inside a VM this is the ivshmem PCI function (BAR2 region, IVPosition, BAR0 Doorbell, one VFIO
// MSI-X eventfd per vector). For tests on the host the same agent joins a tosec-ivshmem-server
// socket as an ordinary process peer, so agent + TOE can be proven without booting a VM. The
// rest of the agent sees only this interface.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/status.h"
#include "tosec/rpc/unique_fd.h"

namespace tosec::agent {

class Device : public rpc::DoorbellRinger {
 public:
  ~Device() override = default;

  virtual std::span<std::byte> region() const = 0;
  // A fresh fd of the region for a shim to map (pci: sysfs resource2; process: the server's
  // shared-memory fd). The caller closes it.
  virtual rpc::Result<rpc::UniqueFd> region_fd() const = 0;
  virtual rpc::PeerId self() const = 0;
  virtual unsigned vectors() const = 0;
  // Eventfd of our vector `v` (the one the TOE's ring makes readable), or -1 when the device
  // polls (pci without VFIO): the agent then ticks a local eventfd instead.
  virtual int vector_fd(rpc::Vector v) const = 0;
  // An fd that becomes readable when the device has control events (process peer: the
  // server's socket, peers joining/leaving), or -1; process_events() handles them.
  virtual int events_fd() const { return -1; }
  virtual rpc::Status process_events() { return {}; }
  // Peers this device knows of (process peer: the server's list; pci: none).
  virtual std::vector<rpc::PeerId> peers() const { return {}; }
  virtual std::string describe() const = 0;
};

struct DeviceSpec {
  enum class Kind { kPci, kSocket } kind = Kind::kPci;
  unsigned pci_index = 0;
  std::string socket_path;
};

// "pci", "pci:INDEX" or "socket:PATH"; the error names what was wrong.
rpc::Result<DeviceSpec> parse_device_spec(const std::string& text);

// Opens the device with `vectors` interrupt vectors (the TOE's lanes + 1). irq: "auto", "vfio",
// "poll" (pci only).
rpc::Result<std::unique_ptr<Device>> open_device(const DeviceSpec& spec, unsigned vectors,
                                                 const std::string& irq);

}  // namespace tosec::agent
