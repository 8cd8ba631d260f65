// The two Device implementations (private to the agent).
#pragma once

#include "tosec/agent/device.h"

namespace tosec::agent {

rpc::Result<std::unique_ptr<Device>> open_process_device(const std::string& path, unsigned vectors);
rpc::Result<std::unique_ptr<Device>> open_pci_device(unsigned index, unsigned vectors,
                                                     const std::string& irq);

}  // namespace tosec::agent
