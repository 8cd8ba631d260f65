#include <cstdlib>

#include "tosec/agent/device.h"

namespace tosec::agent {

rpc::Result<DeviceSpec> parse_device_spec(const std::string& text) {
  DeviceSpec spec;
  if (text == "pci") return spec;
  if (text.rfind("pci:", 0) == 0) {
    const std::string idx = text.substr(4);
    char* end = nullptr;
    const unsigned long v = std::strtoul(idx.c_str(), &end, 10);
    if (idx.empty() || *end != '\0' || v > 255) {
      return rpc::Error{EINVAL, "--device pci:INDEX: '" + idx + "' is not an index in [0, 255]"};
    }
    spec.pci_index = static_cast<unsigned>(v);
    return spec;
  }
  if (text.rfind("socket:", 0) == 0 && text.size() > 7) {
    spec.kind = DeviceSpec::Kind::kSocket;
    spec.socket_path = text.substr(7);
    return spec;
  }
  return rpc::Error{EINVAL, "--device '" + text + "': expected pci, pci:INDEX or socket:PATH"};
}

}  // namespace tosec::agent
