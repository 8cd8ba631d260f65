#include "tosec/cli/platform.h"

#include <gtest/gtest.h>
#include <sys/un.h>

#include <algorithm>
#include <bit>

namespace tosec::cli {
namespace {

TEST(CliGuestPaths, Layout) {
  const GuestPaths p = guest_paths("/run/tosec", "g0", "/tosec-g0-x");
  EXPECT_EQ(p.dir, "/run/tosec/guests/g0");
  EXPECT_EQ(p.ivshmem_socket, "/run/tosec/guests/g0/ivshmem.sock");
  EXPECT_EQ(p.sidecar_socket, "/run/tosec/guests/g0/sidecar.sock");
  EXPECT_EQ(p.status_socket, "/run/tosec/guests/g0/status.sock");
  EXPECT_EQ(p.ivshmem_log, "/run/tosec/logs/g0.ivshmem.log");
  EXPECT_EQ(p.tovm_log, "/run/tosec/logs/g0.tovm.log");
}

TEST(CliGuestPaths, LongestAllowedNamesFitInSunPath) {
  const GuestPaths p = guest_paths(std::string(kMaxRuntimeDirLength, 'd'),
                                   std::string(kMaxGuestNameLength, 'g'), "");
  for (const auto* s : {&p.ivshmem_socket, &p.sidecar_socket, &p.status_socket}) {
    EXPECT_LT(s->size(), sizeof(sockaddr_un{}.sun_path)) << *s;
  }
}

TEST(CliGuestPaths, ShmNamesDifferAcrossRuntimeDirs) {
  EXPECT_NE(persistent_shm_name("/run/tosec", "g0"), persistent_shm_name("/tmp/t", "g0"));
  EXPECT_EQ(persistent_shm_name("/run/tosec", "g0"), persistent_shm_name("/run/tosec", "g0"));
  EXPECT_TRUE(persistent_shm_name("/run/tosec", "g0").starts_with("/tosec-g0-"));
}

TEST(CliArgv, IvshmemServerGetsThePow2RegionSize) {
  GuestConfig g;
  g.name = "g0";
  const std::uint64_t size = guest_region_size(g.channel);
  EXPECT_TRUE(std::has_single_bit(size));
  EXPECT_GE(size, rpc::guest_region_layout(g.channel).required_size());
  const auto argv = ivshmem_server_argv({"/b/tosec-ivshmem-server", "/b/tosec-tovm", ""}, g,
                                        guest_paths("/r", "g0", "/tosec-g0-1"));
  const std::vector<std::string> want = {
      "/b/tosec-ivshmem-server", "-F", "-S", "/r/guests/g0/ivshmem.sock", "-M", "/tosec-g0-1", "-l",
      std::to_string(size),      "-n", "1"};
  EXPECT_EQ(argv, want);
}

TEST(CliArgv, TovmGetsEveryChannelParameter) {
  GuestConfig g;
  g.name = "web";
  g.channel.lanes = 3;
  g.channel.rx_chunks = 99;
  TovmConfig t;
  t.workers = 2;
  t.spin_ns = 500;
  t.log_level = "info";
  const auto argv = tovm_argv({"/b/s", "/b/tosec-tovm", ""}, t, g, guest_paths("/r", "web", ""));
  auto value = [&](const std::string& flag) {
    auto it = std::find(argv.begin(), argv.end(), flag);
    return it == argv.end() || it + 1 == argv.end() ? std::string("<missing>") : *(it + 1);
  };
  EXPECT_EQ(argv.at(0), "/b/tosec-tovm");
  EXPECT_EQ(value("--guest"), "web");
  EXPECT_EQ(value("--ivshmem"), "/r/guests/web/ivshmem.sock");
  EXPECT_EQ(value("--sidecar"), "/r/guests/web/sidecar.sock");
  EXPECT_EQ(value("--status"), "/r/guests/web/status.sock");
  EXPECT_EQ(value("--lanes"), "3");
  EXPECT_EQ(value("--rx-chunks"), "99");
  EXPECT_EQ(value("--max-sockets"), std::to_string(g.channel.max_sockets));
  EXPECT_EQ(value("--ring-slots"), std::to_string(g.channel.ring_slots));
  EXPECT_EQ(value("--socket-rx-entries"), std::to_string(g.channel.socket_rx_entries));
  EXPECT_EQ(value("--chunk-size"), std::to_string(g.channel.chunk_size));
  EXPECT_EQ(value("--tx-chunks-per-lane"), std::to_string(g.channel.tx_chunks_per_lane));
  EXPECT_EQ(value("--workers"), "2");
  EXPECT_EQ(value("--spin-ns"), "500");
  EXPECT_EQ(value("--log-level"), "info");
  EXPECT_EQ(value("--cpus"), "<missing>");  // not pinned unless asked
  t.cpus = "2-3";
  const auto pinned = tovm_argv({"/b/s", "/b/tosec-tovm", ""}, t, g, guest_paths("/r", "web", ""));
  const auto it = std::find(pinned.begin(), pinned.end(), "--cpus");
  ASSERT_NE(it, pinned.end());
  ASSERT_NE(it + 1, pinned.end());
  EXPECT_EQ(*(it + 1), "2-3");
}

TEST(CliArgv, PerGuestToesTakeTheCpusRoundRobin) {
  TovmConfig t;
  t.cpus = "2-3,6";
  EXPECT_EQ(tovm_for_guest(t, 1).cpus, "2-3,6");  // shared: one process, worker i on the i-th
  t.mode = "per-guest";
  EXPECT_EQ(tovm_for_guest(t, 0).cpus, "2");
  EXPECT_EQ(tovm_for_guest(t, 1).cpus, "3");
  EXPECT_EQ(tovm_for_guest(t, 2).cpus, "6");
  EXPECT_EQ(tovm_for_guest(t, 3).cpus, "2");
  t.cpus = "";
  EXPECT_EQ(tovm_for_guest(t, 1).cpus, "");  // not pinned
}

}  // namespace
}  // namespace tosec::cli
