// Finding ivshmem PCI functions in sysfs and binding them to a driver. Every value read is
// validated, and errors name the file, because the tree may be a test's fake one or a kernel's
// with an unexpected layout.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "ivshmem_pci_internal.h"
#include "tosec/rpc/ivshmem_pci.h"

namespace tosec::rpc {

namespace {

Error file_error(const std::string& path, const std::string& what) {
  return Error{EINVAL, path + ": " + what};
}

// Hex number with an optional 0x prefix, the whole string (after one trailing newline).
std::optional<std::uint64_t> parse_hex(std::string s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (s.rfind("0x", 0) == 0 || s.rfind("0X", 0) == 0) s.erase(0, 2);
  if (s.empty() || s.size() > 16) return std::nullopt;
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

Result<std::uint16_t> read_id(const std::string& path) {
  auto text = read_small_file(path);
  if (!text) return text.error();
  auto v = parse_hex(*text);
  if (!v || *v > 0xffff) return file_error(path, "not a 16-bit hex id: '" + *text + "'");
  return static_cast<std::uint16_t>(*v);
}

// Size of BAR `bar` from the `resource` file ("start end flags" in hex, one line per resource),
// cross-checked with the size of the resource<bar> file that is mapped later.
Result<std::uint64_t> bar_size(const std::string& dir, unsigned bar) {
  const std::string path = dir + "/resource";
  auto text = read_small_file(path);
  if (!text) return text.error();
  std::istringstream lines(*text);
  std::string line;
  for (unsigned i = 0; i <= bar; ++i) {
    if (!std::getline(lines, line)) {
      return file_error(path, "no line for BAR" + std::to_string(bar));
    }
  }
  std::istringstream fields(line);
  std::string a, b, c;
  if (!(fields >> a >> b >> c)) {
    return file_error(
        path, "BAR" + std::to_string(bar) + " line is not 'start end flags': '" + line + "'");
  }
  const auto start = parse_hex(a), end = parse_hex(b);
  if (!start || !end || !parse_hex(c)) {
    return file_error(path,
                      "BAR" + std::to_string(bar) + " line has a bad hex field: '" + line + "'");
  }
  if (*start == 0 && *end == 0) {
    return file_error(path, "BAR" + std::to_string(bar) + " is not assigned");
  }
  if (*end < *start) {
    return file_error(path, "BAR" + std::to_string(bar) + " ends before it starts: '" + line + "'");
  }
  const std::uint64_t size = *end - *start + 1;
  const std::string res = dir + "/resource" + std::to_string(bar);
  struct stat st {};
  if (::stat(res.c_str(), &st) != 0) return errno_error("stat(" + res + ")");
  if (static_cast<std::uint64_t>(st.st_size) != size) {
    return file_error(res, "size " + std::to_string(st.st_size) + " differs from BAR" +
                               std::to_string(bar) + " size " + std::to_string(size) +
                               " in resource");
  }
  return size;
}

std::string link_basename(const std::string& path) {
  char buf[4096];
  const auto n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string target(buf, static_cast<std::size_t>(n));
  const auto slash = target.rfind('/');
  return slash == std::string::npos ? target : target.substr(slash + 1);
}

Result<IvshmemPciDevice> describe(const std::string& dir, const std::string& bdf) {
  IvshmemPciDevice d{bdf, dir, 0, 0, current_driver(dir)};
  auto b0 = bar_size(dir, 0);
  if (!b0) return b0.error();
  if (*b0 < kIvshmemBar0MinSize) {
    return file_error(dir + "/resource", "BAR0 is " + std::to_string(*b0) +
                                             " bytes, too small for the ivshmem registers");
  }
  auto b2 = bar_size(dir, 2);
  if (!b2) return b2.error();
  if ((*b2 & (*b2 - 1)) != 0) {
    return file_error(dir + "/resource",
                      "BAR2 size " + std::to_string(*b2) + " is not a power of two");
  }
  d.bar0_size = *b0;
  d.bar2_size = *b2;
  return d;
}

}  // namespace

Result<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return errno_error("open(" + path + ")");
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return errno_error("read(" + path + ")");
  return s.str();
}

Status write_small_file(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_error("open(" + path + ")");
  const auto n = ::write(fd.get(), text.data(), text.size());
  if (n < 0) return errno_error("write(" + path + ", '" + text + "')");
  if (static_cast<std::size_t>(n) != text.size()) {
    return Error{EIO, "write(" + path + "): short write"};
  }
  return {};
}

std::string current_driver(const std::string& dev_dir) {
  return link_basename(dev_dir + "/driver");
}

std::string iommu_group(const std::string& dev_dir) {
  return link_basename(dev_dir + "/iommu_group");
}

Result<std::vector<IvshmemPciDevice>> find_ivshmem_devices(const std::string& sysfs_root) {
  const std::string base = sysfs_root + "/bus/pci/devices";
  DIR* d = ::opendir(base.c_str());
  if (d == nullptr) return errno_error("opendir(" + base + ")");
  std::vector<std::string> bdfs;
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] != '.') bdfs.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(bdfs.begin(), bdfs.end());
  std::vector<IvshmemPciDevice> out;
  for (const auto& bdf : bdfs) {
    const std::string dir = base + "/" + bdf;
    auto vendor = read_id(dir + "/vendor");
    if (!vendor) return vendor.error();
    if (*vendor != kIvshmemVendor) continue;
    auto device = read_id(dir + "/device");
    if (!device) return device.error();
    if (*device != kIvshmemDevice) continue;
    auto desc = describe(dir, bdf);
    if (!desc) return desc.error();
    out.push_back(std::move(*desc));
  }
  return out;
}

Result<IvshmemPciDevice> select_ivshmem_device(const IvshmemSelector& sel) {
  auto all = find_ivshmem_devices(sel.sysfs_root);
  if (!all) return all.error();
  std::string found;
  for (const auto& d : *all) found += (found.empty() ? "" : ", ") + d.bdf;
  if (found.empty()) found = "none";
  if (sel.bdf) {
    const std::string want = sel.bdf->size() == 7 ? "0000:" + *sel.bdf : *sel.bdf;
    for (auto& d : *all) {
      if (d.bdf == want) return std::move(d);
    }
    return Error{ENODEV, "no ivshmem device (1af4:1110) at " + want + " under " + sel.sysfs_root +
                             " (found: " + found + ")"};
  }
  if (sel.index >= all->size()) {
    return Error{ENODEV, "no ivshmem device (1af4:1110) #" + std::to_string(sel.index) + " under " +
                             sel.sysfs_root + " (found: " + found + ")"};
  }
  return std::move((*all)[sel.index]);
}

Status bind_pci_driver(const IvshmemPciDevice& dev, const std::string& driver,
                       const std::string& sysfs_root) {
  const std::string cur = current_driver(dev.sysfs_dir);
  if (cur == driver) return {};
  if (auto s = write_small_file(dev.sysfs_dir + "/driver_override", driver); !s) return s;
  if (!cur.empty()) {
    if (auto s = write_small_file(dev.sysfs_dir + "/driver/unbind", dev.bdf); !s) return s;
  }
  // drivers_probe fails (EINVAL/ENODEV) when no driver accepts the device: the check below
  // reports that with the driver's name, which says more than the write's errno.
  (void)write_small_file(sysfs_root + "/bus/pci/drivers_probe", dev.bdf);
  // The bind is synchronous on the write, but give a slow (TCG) kernel a moment for the link.
  for (int i = 0; i < 50; ++i) {
    if (current_driver(dev.sysfs_dir) == driver) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::string now = current_driver(dev.sysfs_dir);
  return Error{ENODEV, "binding " + dev.bdf + " to " + driver + " failed (bound to " +
                           (now.empty() ? std::string("no driver") : now) +
                           "; is the module loaded? see dmesg)"};
}

}  // namespace tosec::rpc
