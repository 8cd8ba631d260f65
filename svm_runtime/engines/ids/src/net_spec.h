// Parsing of the address and port fields of a rule header.
#pragma once

#include <string_view>

#include "tosec/svm/engines/ids_rule.h"

namespace tosec::svm::ids {

// Bare messages ("bad CIDR prefix in '10.0.0.0/33'"); the caller adds file and line.
rpc::Result<AddressSpec> parse_address_spec(std::string_view text);
rpc::Result<PortSpec> parse_port_spec(std::string_view text);

}  // namespace tosec::svm::ids
