// Helpers shared by the ivshmem PCI files (not part of the public interface).
#pragma once

#include <string>

#include "tosec/rpc/status.h"

namespace tosec::rpc {

// Whole content of a small (sysfs) file; errors name the file.
Result<std::string> read_small_file(const std::string& path);
// One write() of `text` to an existing file (sysfs attributes take one write each).
Status write_small_file(const std::string& path, const std::string& text);
// Basename of the <dev>/driver and <dev>/iommu_group links; empty if absent.
std::string current_driver(const std::string& dev_dir);
std::string iommu_group(const std::string& dev_dir);

}  // namespace tosec::rpc
