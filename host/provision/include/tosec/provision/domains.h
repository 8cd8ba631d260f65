// VM mode (docs/provisioning.md): from the platform config to the libvirt domains of the TOVM,
// each SVM and each guest, and their domain XML.
//
// Every domain is a TCG domain (<domain type='qemu'>: KVM does not boot guests on the hosts
// here) that boots a kernel and an initrd from the images dir, logs its serial console to a file
// in the runtime dir and has no NIC. Its shared-memory regions are ivshmem-doorbell <shmem>
// devices connected to the same tosec-ivshmem-server sockets the process-mode platform uses, so
// process peers and VM peers can share one region. Each device sits at a fixed PCI slot, and the
// kernel command line says which region is at which slot (the in-VM side reads /proc/cmdline).
//
// Pure functions: no libvirt, no file system, so the rules are unit-tested. libvirt.h talks to
// libvirt.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/cli/config.h"
#include "tosec/cli/launch.h"
#include "tosec/rpc/status.h"

namespace tosec::provision {

// Shared-memory devices go to PCI slots 0x08..0x1e of bus 0 (q35: slot 0 holds the host
// bridge, 0x1f the ICH9 LPC/SATA/SMBus functions; libvirt places anything else it adds in the
// low slots).
inline constexpr std::uint32_t kFirstShmemSlot = 0x08;
inline constexpr std::uint32_t kLastShmemSlot = 0x1e;
// Every domain's kernel command line starts with this: VFIO needs the guest's IOMMU to hand
// the ivshmem device's MSI-X vectors to user space (decision 0010).
inline constexpr const char* kIommuCmdline = "intel_iommu=on";
// libvirt refuses an ivshmem <size> that is not a power of two of at least 1 MiB. For the
// doorbell model QEMU maps whatever the server hands over, so the size only documents it.
inline constexpr std::uint64_t kMinShmemSize = std::uint64_t{1} << 20;
// x86 COMMAND_LINE_SIZE, including the terminating NUL.
inline constexpr std::size_t kMaxKernelCmdline = 2047;
// Image file names under the images dir: one kernel, one initrd for guests and one for the
// infrastructure VMs (TOVM and SVMs).
inline constexpr const char* kKernelImage = "vmlinuz";
inline constexpr const char* kGuestInitrd = "guest.initrd";
inline constexpr const char* kInfraInitrd = "infra.initrd";

enum class Role { kTovm, kSvm, kGuest };
std::string_view role_name(Role role);  // "tovm", "svm", "guest"

struct ShmemDevice {
  std::string name;        // <shmem name=...>: "tosec-<guest>" or "tosec-<guest>-inspect"
  std::string kind;        // "guest" (a guest region) or "inspect" (an inspection region)
  std::string guest;       // whose region
  std::string server;      // the tosec-ivshmem-server socket
  std::uint64_t size = 0;  // bytes, a power of two
  // MSI-X vectors: exactly what the region's tosec-ivshmem-server gives each peer (`-n`), as
  // QEMU refuses a server that sends more eventfds per peer than the device has vectors.
  std::uint32_t vectors = 1;
  std::uint32_t slot = 0;             // PCI slot on bus 0
  std::optional<std::uint32_t> node;  // an SVM's mesh node in that inspection region
};

struct DomainSpec {
  Role role = Role::kGuest;
  std::string name;      // libvirt domain name: <prefix>tovm, <prefix>svm-<svm>, <prefix>guest-<g>
  std::string instance;  // the guest's or SVM's name ("tovm" for the TOVM)
  std::string uuid;      // stable for (runtime dir, domain name): redefinition keeps the domain
  std::string description;
  std::string runtime_dir;
  std::uint64_t memory_mib = 0;
  std::uint32_t vcpus = 1;
  // Host CPU of vCPU i (libvirt <vcputune><vcpupin>): the TOVM's from [tovm] cpus, vCPU i on the
  // i-th CPU round robin, as worker i of a process-mode TOE. Empty: not pinned.
  std::vector<unsigned> vcpu_cpus;
  std::string kernel;
  std::string initrd;
  std::string cmdline;
  std::string console_log;  // serial console (ttyS0) appended to this file
  std::vector<ShmemDevice> shmem;
};

// The domains of `cfg` in start order: the TOVM, the SVMs (each that a guest's chain uses, in
// order of first use), the guests, each only if its role is in [vm] roles. The TOVM attaches
// every guest region and every inspection region, an SVM the inspection regions of the guests
// whose chains use it, a guest its own region. cfg.vm.images_dir must be absolute when set (the
// CLI makes it so). Errors (exit 2 in the CLI) name the domain: too many regions for the PCI
// slots, a kernel command line over kMaxKernelCmdline.
rpc::Result<std::vector<DomainSpec>> plan_domains(const cli::Config& cfg);

// The domain XML of one domain (a complete document).
std::string domain_xml(const DomainSpec& domain);

// Text and attribute values: & < > " ' escaped.
std::string xml_escape(std::string_view text);

// A version-8 (RFC 9562, custom) UUID derived from `key`: "xxxxxxxx-xxxx-8xxx-yxxx-xxxxxxxxxxxx".
std::string stable_uuid(std::string_view key);

// What must exist on the host before the domain starts: the kernel, the initrd and every
// ivshmem server socket (QEMU connects at start and fails without it). Returns the first
// missing one as an error naming the domain and what to do.
bool path_exists(const std::string& path);  // any file type (sockets too)
rpc::Status check_start_prerequisites(const DomainSpec& domain,
                                      const cli::ExistsFn& exists = path_exists);

}  // namespace tosec::provision
