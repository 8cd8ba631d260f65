// tosec-ivshmem-server with a real QEMU (TCG) ivshmem-doorbell device and TOSEC process peers.
//
// QEMU runs with -S (no guest code) under TCG. What a guest would do through the device is done
// with QEMU's qtest protocol on the same instance: PCI config cycles to place BAR0/BAR2, MMIO
// reads of IVPosition and BAR2, and MMIO writes to the Doorbell register.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

#include "ivshmem_test_support.h"
#include "tosec/rpc/ivshmem_client.h"
#include "tosec/rpc/ivshmem_protocol.h"

#ifndef TOSEC_IVSHMEM_SERVER_BIN
#error "TOSEC_IVSHMEM_SERVER_BIN must name the server binary"
#endif

namespace tosec {
namespace {

using rpc::IvshmemClient;
using rpc::PeerId;
using rpc::UniqueFd;
using test::ChildProcess;
using test::TempDir;

constexpr int kTimeoutMs = 20000;  // TCG on 2 shared cores can be slow to start

std::optional<std::string> find_qemu() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = dir + "/qemu-system-x86_64";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// A line-oriented unix-socket client for QMP and qtest.
class LineClient {
 public:
  // QEMU creates its sockets during startup: retry until `timeout_ms`.
  bool connect(const std::string& path, int timeout_ms) {
    return test::wait_until(
        [&] {
          fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
          sockaddr_un addr{};
          addr.sun_family = AF_UNIX;
          std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
          return ::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
        },
        timeout_ms);
  }
  bool send_line(const std::string& line) {
    const std::string l = line + "\n";
    return ::send(fd_.get(), l.data(), l.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(l.size());
  }
  // Next line without its terminator; nullopt on timeout or EOF.
  std::optional<std::string> read_line(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      const auto n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
      if (n <= 0) return std::nullopt;
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  // qtest: one command, one "OK ..." answer.
  std::string qtest(const std::string& cmd) {
    if (!send_line(cmd)) return "send failed";
    auto r = read_line(5000);
    return r ? *r : "no answer";
  }

 private:
  UniqueFd fd_;
  std::string buf_;
};

// Value of an "OK 0x..." qtest answer.
std::uint64_t qtest_value(const std::string& answer) {
  EXPECT_EQ(answer.rfind("OK 0x", 0), 0U) << answer;
  return answer.size() > 5 ? std::stoull(answer.substr(5), nullptr, 16) : ~0ULL;
}

// The doorbell server (foreground, our binary) plus one QEMU with an ivshmem-doorbell device.
class QemuIvshmemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto q = find_qemu();
    if (!q) GTEST_SKIP() << "qemu-system-x86_64 not installed (Debian package qemu-system-x86)";
    qemu_bin_ = *q;
  }

  void start_server(unsigned vectors) {
    shm_name_ = test::unique_name("tosec-ivs-qemu");
    server_ = ChildProcess::spawn({TOSEC_IVSHMEM_SERVER_BIN, "-F", "-v", "-S", sock_, "-M",
                                   shm_name_, "-l", "4M", "-n", std::to_string(vectors)},
                                  dir_.file("server.out"), dir_.file("server.err"));
    ASSERT_TRUE(server_.started());
    ASSERT_TRUE(test::wait_until([&] { return test::path_exists(sock_); }, kTimeoutMs)) << diag();
  }

  void start_qemu(unsigned vectors) {
    qemu_ = ChildProcess::spawn(
        {qemu_bin_,
         "-accel",
         "tcg",
         "-S",
         "-display",
         "none",
         "-nodefaults",
         "-machine",
         "q35",
         "-m",
         "64",
         "-chardev",
         "socket,path=" + sock_ + ",id=ivs",
         "-device",
         "ivshmem-doorbell,chardev=ivs,vectors=" + std::to_string(vectors) + ",addr=04.0",
         "-qmp",
         "unix:" + dir_.file("qmp.sock") + ",server=on,wait=off",
         "-qtest",
         "unix:" + dir_.file("qtest.sock") + ",server=on,wait=off",
         "-qtest-log",
         "/dev/null"},
        dir_.file("qemu.out"), dir_.file("qemu.err"));
    ASSERT_TRUE(qemu_.started());
  }

  // QMP "quit": the graceful way out, so QEMU closes its ivshmem connection itself.
  void quit_qemu() {
    LineClient qmp;
    ASSERT_TRUE(qmp.connect(dir_.file("qmp.sock"), kTimeoutMs)) << diag();
    ASSERT_TRUE(qmp.read_line(kTimeoutMs).has_value()) << "QMP greeting";
    ASSERT_TRUE(qmp.send_line(R"({"execute":"qmp_capabilities"})"));
    ASSERT_TRUE(qmp.read_line(kTimeoutMs).has_value());
    ASSERT_TRUE(qmp.send_line(R"({"execute":"quit"})"));
    auto st = qemu_.wait(kTimeoutMs);
    ASSERT_TRUE(st.has_value()) << "QEMU did not quit";
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << diag();
  }

  std::string diag() const {
    return "\n--- server stdout:\n" + test::slurp(dir_.file("server.out")) +
           "--- server stderr:\n" + test::slurp(dir_.file("server.err")) + "--- qemu stderr:\n" +
           test::slurp(dir_.file("qemu.err"));
  }

  TempDir dir_;
  std::string sock_ = dir_.file("ivshmem.sock");
  std::string qemu_bin_;
  std::string shm_name_;
  // Declared last, destroyed first: QEMU and the server are always killed and reaped.
  ChildProcess server_;
  ChildProcess qemu_;
};

TEST_F(QemuIvshmemTest, ProcessPeerSeesQemuJoinRingAndLeave) {
  start_server(2);
  IvshmemClient peer({2, kTimeoutMs});
  auto s = peer.connect(sock_);
  ASSERT_TRUE(s.ok()) << s.message() << diag();
  EXPECT_EQ(peer.self_id(), 0);
  EXPECT_EQ(peer.region().size(), 4U << 20);

  // A second, raw peer keeps QEMU's eventfds itself, to see QEMU consume a ring.
  UniqueFd raw(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock_.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::connect(raw.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  // version, id 1, shm, peer 0 x2, own x2
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(rpc::ivshmem::recv_msg(raw.get(), kTimeoutMs).ok());
  ASSERT_TRUE(peer.wait_for_peer(1, kTimeoutMs).ok());

  start_qemu(2);
  auto qemu_id = peer.wait_for_peer(std::nullopt, kTimeoutMs);
  ASSERT_TRUE(qemu_id.ok()) << qemu_id.error().message << diag();
  EXPECT_EQ(*qemu_id, 2) << "QEMU is the third peer";
  EXPECT_EQ(peer.doorbells().peer_vector_count(*qemu_id), 2U) << "one eventfd per vector";
  EXPECT_EQ(peer.peers(), (std::vector<PeerId>{1, 2}));
  EXPECT_TRUE(peer.doorbells().ring(*qemu_id, 0).ok());
  EXPECT_TRUE(peer.doorbells().ring(*qemu_id, 1).ok());
  EXPECT_EQ(peer.doorbells().ring(*qemu_id, 2).code(), ENOENT);

  std::vector<UniqueFd> qemu_vectors;
  for (int v = 0; v < 2; ++v) {
    auto m = rpc::ivshmem::recv_msg(raw.get(), kTimeoutMs);
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_EQ(m->value, *qemu_id);
    ASSERT_TRUE(m->fd.valid());
    qemu_vectors.push_back(std::move(m->fd));
  }
  // QEMU watches its own vectors' eventfds and reads them when rung (then raises MSI-X if the
  // guest enabled it): the counter we write drops back to zero.
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(qemu_vectors[1].get(), &one, sizeof one), 8);
  EXPECT_TRUE(test::wait_until(
      [&] {
        pollfd p{qemu_vectors[1].get(), POLLIN, 0};
        return ::poll(&p, 1, 0) == 0;
      },
      kTimeoutMs))
      << "QEMU did not consume the doorbell" << diag();

  quit_qemu();
  auto left = peer.wait_for_peer_left(*qemu_id, kTimeoutMs);
  EXPECT_TRUE(left.ok()) << left.message() << diag();
  EXPECT_FALSE(peer.doorbells().has_peer(*qemu_id));
  EXPECT_EQ(peer.peers(), std::vector<PeerId>{1});
  auto dep = rpc::ivshmem::recv_msg(raw.get(), kTimeoutMs);
  ASSERT_TRUE(dep.ok());
  EXPECT_EQ(dep->value, *qemu_id);
  EXPECT_FALSE(dep->fd.valid()) << "a departure carries no fd";
}

TEST_F(QemuIvshmemTest, GuestSideRegistersBar2AndDoorbell) {
  start_server(2);
  IvshmemClient peer({2, kTimeoutMs});
  auto s = peer.connect(sock_);
  ASSERT_TRUE(s.ok()) << s.message() << diag();
  std::memcpy(peer.region().data(), "TOSECv01", 8);

  start_qemu(2);
  auto qemu_id = peer.wait_for_peer(std::nullopt, kTimeoutMs);
  ASSERT_TRUE(qemu_id.ok()) << qemu_id.error().message << diag();

  LineClient qt;
  ASSERT_TRUE(qt.connect(dir_.file("qtest.sock"), kTimeoutMs)) << diag();
  // Device 4 on bus 0 (addr=04.0): place BAR0 (registers) and BAR2 (64-bit, shared memory) as
  // firmware would, then enable memory decoding.
  const std::string cfg = "0x800020";
  auto cfg_write = [&](const char* reg, const std::string& value) {
    EXPECT_EQ(qt.qtest("outl 0xcf8 " + cfg + reg), "OK");
    EXPECT_EQ(qt.qtest("outl 0xcfc " + value), "OK");
  };
  EXPECT_EQ(qt.qtest("outl 0xcf8 " + cfg + "00"), "OK");
  EXPECT_EQ(qtest_value(qt.qtest("inl 0xcfc")), 0x11101af4U) << "vendor 1af4, device 1110";
  cfg_write("10", "0xfebf0000");  // BAR0
  cfg_write("18", "0xfe000000");  // BAR2 low
  cfg_write("1c", "0x0");         // BAR2 high
  cfg_write("04", "0x6");         // memory space + bus master

  // IVPosition (BAR0 + 8) is the id our server gave QEMU.
  EXPECT_EQ(qtest_value(qt.qtest("readl 0xfebf0008")), *qemu_id);
  // BAR2 is our region: the bytes the process peer wrote.
  EXPECT_EQ(qt.qtest("read 0xfe000000 8"), "OK 0x544f534543763031");
  EXPECT_EQ(qt.qtest("writeq 0xfe000100 0x0807060504030201"), "OK");
  EXPECT_EQ(static_cast<unsigned>(peer.region().data()[0x100]), 1U);
  EXPECT_EQ(static_cast<unsigned>(peer.region().data()[0x107]), 8U);

  // Doorbell (BAR0 + 12) = peer id << 16 | vector rings that peer's eventfd.
  const auto ring = [&](std::uint32_t value) {
    std::ostringstream cmd;
    cmd << "writel 0xfebf000c 0x" << std::hex << value;
    EXPECT_EQ(qt.qtest(cmd.str()), "OK");
  };
  const std::uint32_t target = std::uint32_t{peer.self_id()} << 16;
  ring(target | 1);
  auto rung = peer.doorbells().wait(1, 5'000'000'000);
  ASSERT_TRUE(rung.ok());
  EXPECT_TRUE(*rung) << "vector 1 rung from the device" << diag();
  auto quiet = peer.doorbells().wait(0, 0);
  ASSERT_TRUE(quiet.ok());
  EXPECT_FALSE(*quiet) << "vector 0 was not rung";
  ring(target | 0);
  rung = peer.doorbells().wait(0, 5'000'000'000);
  ASSERT_TRUE(rung.ok());
  EXPECT_TRUE(*rung);
  // QEMU 7.2 uses only the low 8 bits of the vector field: 0x101 rings vector 1.
  ring(target | 0x101);
  rung = peer.doorbells().wait(1, 5'000'000'000);
  ASSERT_TRUE(rung.ok());
  EXPECT_TRUE(*rung) << "vector field is masked with 0xff";
  // A vector we do not have, or a peer that does not exist, is silently ignored.
  ring(target | 5);
  ring((std::uint32_t{77} << 16) | 0);
  quiet = peer.doorbells().wait(0, 100'000'000);
  ASSERT_TRUE(quiet.ok());
  EXPECT_FALSE(*quiet);

  qemu_.signal(SIGTERM);
  ASSERT_TRUE(qemu_.wait(kTimeoutMs).has_value());
  EXPECT_TRUE(peer.wait_for_peer_left(*qemu_id, kTimeoutMs).ok()) << diag();
}

TEST_F(QemuIvshmemTest, MoreServerVectorsThanTheDeviceHasIsNotFatal) {
  start_server(4);
  IvshmemClient peer({4, kTimeoutMs});
  ASSERT_TRUE(peer.connect(sock_).ok()) << diag();
  start_qemu(2);
  auto qemu_id = peer.wait_for_peer(std::nullopt, kTimeoutMs);
  ASSERT_TRUE(qemu_id.ok()) << qemu_id.error().message << diag();
  // QEMU 7.2 closes the surplus fds with an error message per fd and keeps running.
  EXPECT_TRUE(test::wait_until(
      [&] {
        return test::slurp(dir_.file("qemu.err")).find("Too many eventfd received") !=
               std::string::npos;
      },
      kTimeoutMs))
      << diag();
  EXPECT_FALSE(qemu_.wait(500).has_value()) << "QEMU must still be running" << diag();
  EXPECT_TRUE(peer.doorbells().ring(*qemu_id, 3).ok()) << "ringing an unused vector is harmless";
  quit_qemu();
  EXPECT_TRUE(peer.wait_for_peer_left(*qemu_id, kTimeoutMs).ok()) << diag();
}

}  // namespace
}  // namespace tosec
