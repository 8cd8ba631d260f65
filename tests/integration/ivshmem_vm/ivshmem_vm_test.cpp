// rpc::IvshmemPci inside a real VM: a TCG QEMU boots the vm_images/ guest image with an
// ivshmem-doorbell device on our tosec-ivshmem-server; a host process peer (rpc::IvshmemClient)
// and tosec-ivshmem-probe in the VM (vm_script.sh) exchange bytes and doorbells both ways.
//
// The VM is a q35 machine with QEMU's intel-iommu and boots with intel_iommu=on: Debian's kernel
// has no CONFIG_VFIO_NOIOMMU, so VFIO (the only user-space path to MSI-X) needs a (virtual)
// IOMMU. See docs/ivshmem-protocol.md, "Inside a VM".
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <regex>

#include "ivshmem_test_support.h"
#include "tosec/rpc/ivshmem_client.h"

#if !defined(TOSEC_IVSHMEM_SERVER_BIN) || !defined(TOSEC_PROBE_BIN) || !defined(TOSEC_SOURCE_DIR)
#error "TOSEC_IVSHMEM_SERVER_BIN, TOSEC_PROBE_BIN and TOSEC_SOURCE_DIR must be defined"
#endif

namespace tosec {
namespace {

using rpc::IvshmemClient;
using test::ChildProcess;
using test::TempDir;

constexpr int kBootMs = 240'000;  // boot + script under TCG on 2 shared cores, generous

bool have(const char* tool) {
  const std::string cmd = std::string("command -v ") + tool + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// The value of the first "key: value" line of the VM's serial output.
std::string fact(const std::string& log, const std::string& key) {
  std::smatch m;
  const std::regex re("(^|\\n)" + key + ": ([^\\r\\n]*)");
  return std::regex_search(log, m, re) ? m[2].str() : "<missing " + key + ">";
}

TEST(IvshmemVm, ProcessPeerAndVmPeerShareBytesAndDoorbells) {
  if (!have("qemu-system-x86_64")) {
    GTEST_SKIP() << "qemu-system-x86_64 not installed (Debian package qemu-system-x86)";
  }
  const std::string builder = std::string(TOSEC_SOURCE_DIR) + "/vm_images/build";
  if (!test::path_exists(builder)) GTEST_SKIP() << builder << " not in this tree";

  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  // The image: the guest role plus the probe and the in-VM script. The kernel .deb cache is the
  // tree's shared one (build/vm-images-cache), so only the first run on a machine downloads.
  auto build = ChildProcess::spawn(
      {"bash", builder, "--role", "guest", "--out", dir.file("img"), "--add", TOSEC_PROBE_BIN,
       "--add",
       std::string(TOSEC_SOURCE_DIR) + "/tests/integration/ivshmem_vm/vm_script.sh:/test.sh"},
      dir.file("build.out"), dir.file("build.err"));
  const auto built = build.wait(600'000);
  ASSERT_TRUE(built && WIFEXITED(*built) && WEXITSTATUS(*built) == 0)
      << "vm_images/build failed:\n"
      << test::slurp(dir.file("build.err"));

  const std::string sock = dir.file("ivs.sock");
  const std::string shm = test::unique_name("tosec-ivs-vm");
  auto server = ChildProcess::spawn(
      {TOSEC_IVSHMEM_SERVER_BIN, "-F", "-v", "-S", sock, "-M", shm, "-l", "4M", "-n", "2"},
      dir.file("server.out"), dir.file("server.err"));
  ASSERT_TRUE(server.started());
  ASSERT_TRUE(test::wait_until([&] { return test::path_exists(sock); }, 20'000))
      << test::slurp(dir.file("server.err"));

  IvshmemClient host({.vectors = 2});
  ASSERT_TRUE(host.connect(sock));
  std::memcpy(host.region().data(), "HOST-HELLO", 10);

  const std::string serial = dir.file("serial.log");
  auto qemu = ChildProcess::spawn(
      {"qemu-system-x86_64",
       "-accel",
       "tcg",
       "-machine",
       "q35",
       "-device",
       "intel-iommu",
       "-m",
       "256",
       "-nodefaults",
       "-display",
       "none",
       "-no-reboot",
       "-monitor",
       "none",
       "-serial",
       "file:" + serial,
       "-kernel",
       dir.file("img/vmlinuz"),
       "-initrd",
       dir.file("img/guest.initrd"),
       "-append",
       "console=ttyS0 panic=-1 intel_iommu=on tosec.run=/test.sh tosec.test.host=" +
           std::to_string(host.self_id()),
       "-chardev",
       "socket,path=" + sock + ",id=ivs",
       "-device",
       "ivshmem-doorbell,chardev=ivs,vectors=2"},
      dir.file("qemu.out"), dir.file("qemu.err"));
  ASSERT_TRUE(qemu.started());
  auto diag = [&] {
    return "serial:\n" + test::slurp(serial) + "\nqemu stderr:\n" +
           test::slurp(dir.file("qemu.err"));
  };

  auto vm_id = host.wait_for_peer(std::nullopt, 60'000);
  ASSERT_TRUE(vm_id) << vm_id.error().message << "\n" << diag();

  // The VM rings our vector 1 once it has its MSI-X eventfds and wrote its marker.
  auto rung = host.doorbells().wait(1, std::int64_t{kBootMs} * 1'000'000);
  ASSERT_TRUE(rung) << rung.error().message;
  ASSERT_TRUE(*rung) << "the VM never rang the host's vector 1\n" << diag();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(host.region().data()) + 4096, 8), "VM-HELLO");
  // Now its vector 0 is armed: this ring must end the VM's --wait with "rung".
  ASSERT_TRUE(host.doorbells().ring(*vm_id, 0));

  const auto exited = qemu.wait(kBootMs);
  ASSERT_TRUE(exited) << "the VM did not power off\n" << diag();
  const std::string log = test::slurp(serial);
  EXPECT_NE(log.find("TOSEC-VM: exit 0"), std::string::npos) << diag();
  EXPECT_EQ(fact(log, "ivposition"), std::to_string(*vm_id));
  EXPECT_EQ(fact(log, "backend"), "vfio");
  EXPECT_EQ(fact(log, "read 0"), "HOST-HELLO");
  EXPECT_EQ(fact(log, "await 0"), "HOST-HELLO");
  EXPECT_EQ(fact(log, "wait 0"), "rung");
  // UIO: uio_pci_generic binds without an interrupt (no INTx pin); the backend says so.
  EXPECT_EQ(fact(log, "uio-status"), "2") << diag();
  EXPECT_NE(log.find("has no INTx interrupt"), std::string::npos) << diag();
  EXPECT_NE(log.find("backend: poll"), std::string::npos) << diag();
  EXPECT_NE(log.find("wait 0: poll-interval"), std::string::npos) << diag();
}

}  // namespace
}  // namespace tosec
