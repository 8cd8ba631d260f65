// Command line of tosec-guest-agent.
#pragma once

#include <optional>
#include <string>

#include "tosec/agent/device.h"
#include "tosec/rpc/doorbell.h"
#include "tosec/rpc/status.h"

namespace tosec::agent {

struct AgentOptions {
  DeviceSpec device;
  std::string ivshmem_socket = "/run/tosec/ivshmem.sock";
  std::string toe_socket = "/run/tosec/toe.sock";
  // MSI-X vectors: the TOE's lanes + 1 (the VM-mode process limit is vectors - 1 ... and the
  // TOE's free lanes). Must not exceed the device's (QEMU `vectors=`, the server's -n).
  unsigned vectors = 17;
  std::string irq = "auto";
  // Whom to ring with the hello, before the TOE has said who it is (default pci: peers 0..7,
  // the guest server hands out the lowest free id; socket device: every peer the server
  // announced).
  std::optional<rpc::PeerId> toe_peer;
  bool verbose = false;
};

inline constexpr const char* kAgentUsage =
    "usage: tosec-guest-agent [--device pci[:INDEX]|socket:PATH] [--ivshmem-socket PATH]\n"
    "                         [--toe-socket PATH] [--vectors N] [--irq auto|vfio|poll]\n"
    "                         [--toe-peer ID] [-v]\n";

// EINVAL naming the bad argument; ECANCELED for --help (usage printed by the caller).
rpc::Result<AgentOptions> parse_agent_options(int argc, char** argv);

}  // namespace tosec::agent
