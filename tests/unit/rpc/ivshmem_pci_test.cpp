// IvshmemPci against a fake sysfs tree: regular files stand in for the PCI attributes and for
// resource0/resource2, so discovery, validation, BAR mapping, IVPosition and the Doorbell register
// are tested without a VM (the real device: tests/integration/vm).
#include "tosec/rpc/ivshmem_pci.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace tosec::rpc {
namespace {

namespace fs = std::filesystem;

class FakeSysfs {
 public:
  FakeSysfs() {
    std::string tmpl = (fs::temp_directory_path() / "tosec-sysfs-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) root_ = tmpl;
    fs::create_directories(root_ + "/bus/pci/devices");
    write(root_ + "/bus/pci/drivers_probe", "");
  }
  ~FakeSysfs() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  FakeSysfs(const FakeSysfs&) = delete;
  FakeSysfs& operator=(const FakeSysfs&) = delete;

  static void write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  }
  static void sized(const std::string& path, std::uint64_t size) {
    write(path, "");
    fs::resize_file(path, size);
  }
  static std::string hex(std::uint64_t v) {
    char b[32];
    std::snprintf(b, sizeof b, "0x%016llx", static_cast<unsigned long long>(v));
    return b;
  }

  // A PCI function with the given ids and BAR sizes (0: unassigned), files consistent.
  std::string add(const std::string& bdf, std::uint16_t vendor, std::uint16_t device,
                  std::uint64_t bar0 = 256, std::uint64_t bar2 = 1 << 16) {
    const std::string d = dir(bdf);
    fs::create_directories(d);
    char id[16];
    std::snprintf(id, sizeof id, "0x%04x\n", vendor);
    write(d + "/vendor", id);
    std::snprintf(id, sizeof id, "0x%04x\n", device);
    write(d + "/device", id);
    write(d + "/driver_override", "");
    std::string res;
    const std::uint64_t sizes[] = {bar0, 4096, bar2};
    std::uint64_t base = 0xfe000000;
    for (int i = 0; i < 3; ++i) {
      if (sizes[i] == 0) {
        res += hex(0) + " " + hex(0) + " " + hex(0) + "\n";
      } else {
        res += hex(base) + " " + hex(base + sizes[i] - 1) + " " + hex(0x40200) + "\n";
        sized(d + "/resource" + std::to_string(i), sizes[i]);
        base += 1 << 24;
      }
    }
    write(d + "/resource", res);
    return d;
  }
  std::string dir(const std::string& bdf) const { return root_ + "/bus/pci/devices/" + bdf; }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

constexpr std::uint16_t kIntel = 0x8086;

TEST(IvshmemPci, DoorbellValueIsPeerHighVectorLow) {
  EXPECT_EQ(ivshmem_doorbell_value(1, 0), 0x00010000U);
  EXPECT_EQ(ivshmem_doorbell_value(0xffff, 3), 0xffff0003U);
  EXPECT_EQ(ivshmem_doorbell_value(2, 0x101), 0x00020001U);  // QEMU keeps only 8 vector bits
}

TEST(IvshmemPci, BackendNamesRoundTrip) {
  for (auto b : {IvshmemIrqBackend::kAuto, IvshmemIrqBackend::kVfio, IvshmemIrqBackend::kUio,
                 IvshmemIrqBackend::kPoll}) {
    EXPECT_EQ(parse_irq_backend(to_string(b)), b);
  }
  EXPECT_FALSE(parse_irq_backend("msi"));
}

TEST(IvshmemPci, FindsOnlyIvshmemFunctionsInBdfOrder) {
  FakeSysfs fs;
  fs.add("0000:00:05.0", kIvshmemVendor, kIvshmemDevice, 256, 1 << 20);
  fs.add("0000:00:01.0", kIntel, 0x7000);
  fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  fs.add("0000:00:03.0", kIvshmemVendor, 0x1000);  // virtio-net: same vendor, other device
  auto all = find_ivshmem_devices(fs.root());
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 2U);
  EXPECT_EQ((*all)[0].bdf, "0000:00:04.0");
  EXPECT_EQ((*all)[0].bar0_size, 256U);
  EXPECT_EQ((*all)[0].bar2_size, 1U << 16);
  EXPECT_EQ((*all)[0].driver, "");
  EXPECT_EQ((*all)[1].bdf, "0000:00:05.0");
  EXPECT_EQ((*all)[1].bar2_size, 1U << 20);
}

TEST(IvshmemPci, SelectsByIndexAndByBdf) {
  FakeSysfs fs;
  fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  fs.add("0000:00:05.0", kIvshmemVendor, kIvshmemDevice);
  auto second = select_ivshmem_device({.sysfs_root = fs.root(), .index = 1});
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->bdf, "0000:00:05.0");
  auto by_bdf = select_ivshmem_device({.sysfs_root = fs.root(), .bdf = "00:04.0"});
  ASSERT_TRUE(by_bdf) << by_bdf.error().message;
  EXPECT_EQ(by_bdf->bdf, "0000:00:04.0");
}

TEST(IvshmemPci, MissingDeviceIsEnodevNamingWhatExists) {
  FakeSysfs fs;
  fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  auto r = select_ivshmem_device({.sysfs_root = fs.root(), .index = 1});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENODEV);
  EXPECT_NE(r.error().message.find("#1"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("found: 0000:00:04.0"), std::string::npos);
  auto b = select_ivshmem_device({.sysfs_root = fs.root(), .bdf = "0000:00:09.0"});
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("0000:00:09.0"), std::string::npos) << b.error().message;

  FakeSysfs empty;
  auto none = select_ivshmem_device({.sysfs_root = empty.root()});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("found: none"), std::string::npos);
}

TEST(IvshmemPci, NoPciDirectoryNamesThePath) {
  auto r = find_ivshmem_devices("/nonexistent-sysfs");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/nonexistent-sysfs/bus/pci/devices"), std::string::npos);
}

// Each malformed attribute must fail with the offending file in the message.
void expect_error_naming(const FakeSysfs& fs, const std::string& file, const std::string& words) {
  auto r = find_ivshmem_devices(fs.root());
  ASSERT_FALSE(r) << "accepted a broken " << file;
  EXPECT_NE(r.error().message.find(file), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(words), std::string::npos) << r.error().message;
}

TEST(IvshmemPci, BadIdValuesNameTheFile) {
  FakeSysfs fs;
  const auto d = fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  FakeSysfs::write(d + "/vendor", "vendor?\n");
  expect_error_naming(fs, d + "/vendor", "not a 16-bit hex id");
  FakeSysfs::write(d + "/vendor", "0x11af4\n");
  expect_error_naming(fs, d + "/vendor", "not a 16-bit hex id");
  FakeSysfs::write(d + "/vendor", "0x1af4\n");
  FakeSysfs::write(d + "/device", "");
  expect_error_naming(fs, d + "/device", "not a 16-bit hex id");
  std::filesystem::remove(d + "/device");
  expect_error_naming(fs, d + "/device", "open");
}

TEST(IvshmemPci, BadResourceLinesNameTheFile) {
  FakeSysfs fs;
  const auto d = fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  FakeSysfs::write(d + "/resource", "0xfe000000 0xfe0000ff\n");
  expect_error_naming(fs, d + "/resource", "not 'start end flags'");
  FakeSysfs::write(d + "/resource", "0xfe000000 0xfe0000zz 0x0\n");
  expect_error_naming(fs, d + "/resource", "bad hex field");
  FakeSysfs::write(d + "/resource", "0xfe000000 0xfe0000ff 0x0\n");
  expect_error_naming(fs, d + "/resource", "no line for BAR2");
  FakeSysfs::write(d + "/resource", "0xfe0000ff 0xfe000000 0x0\n");
  expect_error_naming(fs, d + "/resource", "ends before it starts");
}

TEST(IvshmemPci, WrongBarSizesAreRejected) {
  {
    FakeSysfs fs;
    fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice, 256, 3 << 16);
    expect_error_naming(fs, fs.dir("0000:00:04.0") + "/resource", "not a power of two");
  }
  {
    FakeSysfs fs;
    fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice, 8, 1 << 16);
    expect_error_naming(fs, fs.dir("0000:00:04.0") + "/resource", "too small");
  }
  {
    FakeSysfs fs;
    fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice, 256, 0);
    expect_error_naming(fs, fs.dir("0000:00:04.0") + "/resource", "BAR2 is not assigned");
  }
  {
    FakeSysfs fs;
    const auto d = fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
    FakeSysfs::sized(d + "/resource2", 4096);  // the mapped file disagrees with `resource`
    expect_error_naming(fs, d + "/resource2", "differs from BAR2 size 65536");
  }
}

TEST(IvshmemPci, PollBackendMapsBarsReadsIvPositionAndRingsTheDoorbell) {
  FakeSysfs fs;
  const auto d = fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  {
    std::fstream bar0(d + "/resource0", std::ios::in | std::ios::out | std::ios::binary);
    const std::uint32_t id = 3;
    bar0.seekp(kIvshmemRegIvPosition);
    bar0.write(reinterpret_cast<const char*>(&id), sizeof id);
  }
  auto dev = select_ivshmem_device({.sysfs_root = fs.root()});
  ASSERT_TRUE(dev) << dev.error().message;
  auto pci = IvshmemPci::open(
      *dev, {.vectors = 2, .backend = IvshmemIrqBackend::kPoll, .sysfs_root = fs.root()});
  ASSERT_TRUE(pci) << pci.error().message;
  EXPECT_EQ(pci->backend(), IvshmemIrqBackend::kPoll);
  EXPECT_EQ(pci->self(), 3);
  EXPECT_EQ(pci->region().size(), 1U << 16);
  EXPECT_EQ(pci->own_fd(0), -1);

  std::memcpy(pci->region().data() + 100, "marker", 6);
  ASSERT_TRUE(pci->ring(7, 1));
  std::ifstream bar2(d + "/resource2", std::ios::binary);
  bar2.seekg(100);
  char got[6] = {};
  bar2.read(got, sizeof got);
  EXPECT_EQ(std::string(got, 6), "marker");
  std::ifstream bar0(d + "/resource0", std::ios::binary);
  bar0.seekg(kIvshmemRegDoorbell);
  std::uint32_t bell = 0;
  bar0.read(reinterpret_cast<char*>(&bell), sizeof bell);
  EXPECT_EQ(bell, 0x00070001U);

  // Poll mode cannot know about rings: wait() reports "maybe" so the caller re-checks.
  auto w = pci->wait(0, 0);
  ASSERT_TRUE(w);
  EXPECT_TRUE(*w);
}

TEST(IvshmemPci, AutoFallsBackToPollingWithTheReason) {
  FakeSysfs fs;
  fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  auto dev = select_ivshmem_device({.sysfs_root = fs.root()});
  ASSERT_TRUE(dev);
  auto pci = IvshmemPci::open(*dev, {.sysfs_root = fs.root(), .dev_root = fs.root() + "/nodev"});
  ASSERT_TRUE(pci) << pci.error().message;
  EXPECT_EQ(pci->backend(), IvshmemIrqBackend::kPoll);
  EXPECT_NE(pci->fallback_reason().find("vfio 0000:00:04.0"), std::string::npos)
      << pci->fallback_reason();
  // Asking for VFIO explicitly is an error instead.
  auto vfio = IvshmemPci::open(*dev, {.backend = IvshmemIrqBackend::kVfio,
                                      .sysfs_root = fs.root(),
                                      .dev_root = fs.root() + "/nodev"});
  ASSERT_FALSE(vfio);
  EXPECT_NE(vfio.error().message.find("vfio module not loaded"), std::string::npos);
}

TEST(IvshmemPci, BadVectorCountIsRejected) {
  FakeSysfs fs;
  fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  auto dev = select_ivshmem_device({.sysfs_root = fs.root()});
  ASSERT_TRUE(dev);
  auto pci = IvshmemPci::open(*dev, {.vectors = 0, .sysfs_root = fs.root()});
  ASSERT_FALSE(pci);
  EXPECT_NE(pci.error().message.find("vectors must be"), std::string::npos);
}

TEST(IvshmemPci, BindWritesDriverOverrideAndReportsAFailedProbe) {
  FakeSysfs fs;
  const auto d = fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  auto dev = select_ivshmem_device({.sysfs_root = fs.root()});
  ASSERT_TRUE(dev);
  auto s = bind_pci_driver(*dev, "vfio-pci", fs.root());
  ASSERT_FALSE(s);  // nothing in a fake tree creates the driver link
  EXPECT_NE(s.message().find("binding 0000:00:04.0 to vfio-pci failed"), std::string::npos)
      << s.message();
  std::ifstream ov(d + "/driver_override");
  std::string text;
  std::getline(ov, text);
  EXPECT_EQ(text, "vfio-pci");
  std::ifstream probe(fs.root() + "/bus/pci/drivers_probe");
  std::getline(probe, text);
  EXPECT_EQ(text, "0000:00:04.0");
}

TEST(IvshmemPci, BindIsANoOpWhenAlreadyBound) {
  FakeSysfs fs;
  const auto d = fs.add("0000:00:04.0", kIvshmemVendor, kIvshmemDevice);
  std::filesystem::create_directories(fs.root() + "/bus/pci/drivers/vfio-pci");
  std::filesystem::create_directory_symlink(fs.root() + "/bus/pci/drivers/vfio-pci", d + "/driver");
  auto dev = select_ivshmem_device({.sysfs_root = fs.root()});
  ASSERT_TRUE(dev);
  EXPECT_EQ(dev->driver, "vfio-pci");
  EXPECT_TRUE(bind_pci_driver(*dev, "vfio-pci", fs.root()));
}

}  // namespace
}  // namespace tosec::rpc
