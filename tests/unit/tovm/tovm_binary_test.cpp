// The tosec-tovm executable as the CLI runs it: flags, the ready line, the status socket,
// refusal of a too-small region, clean SIGTERM shutdown.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstring>

#include "ivshmem_test_support.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/tovm/options.h"

#ifndef TOSEC_TOVM_BIN
#error "TOSEC_TOVM_BIN must name the tosec-tovm binary"
#endif

namespace tosec::tovm {
namespace {

using tosec::test::ChildProcess;
using tosec::test::TempDir;

constexpr int kTimeoutMs = 10000;

TEST(TovmBinary, ReadyStatusAndCleanSigterm) {
  TempDir dir;
  rpc::GuestChannelConfig cfg;
  cfg.lanes = 2;
  cfg.max_sockets = 16;
  cfg.rx_chunks = 32;
  cfg.tx_chunks_per_lane = 8;
  tosec::test::ServerThread ivs(host::IvshmemServerConfig{dir.file("ivs.sock"), 1},
                                rpc::guest_region_layout(cfg).pow2_size());
  ASSERT_TRUE(ivs.ok()) << ivs.error();
  ChildProcess p = ChildProcess::spawn(
      {TOSEC_TOVM_BIN, "--guest", "g1", "--ivshmem", dir.file("ivs.sock"), "--sidecar",
       dir.file("side.sock"), "--status", dir.file("st.sock"), "--lanes", "2", "--max-sockets",
       "16", "--rx-chunks", "32", "--tx-chunks-per-lane", "8", "--log-level", "debug"},
      dir.file("out"), dir.file("err"));
  ASSERT_TRUE(p.started());
  ASSERT_TRUE(tosec::test::wait_until(
      [&] { return tosec::test::slurp(dir.file("out")) == "tosec-tovm: ready\n"; }, kTimeoutMs))
      << tosec::test::slurp(dir.file("err"));
  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("side.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  // Status: one JSON object, then EOF.
  rpc::UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, dir.file("st.sock").c_str(), sizeof sun.sun_path - 1);
  ASSERT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
  std::string json;
  char buf[1024];
  for (ssize_t n; (n = ::recv(s.get(), buf, sizeof buf, 0)) > 0;)
    json.append(buf, static_cast<std::size_t>(n));
  EXPECT_EQ(json.rfind("{\"guest\":\"g1\",\"pid\":" + std::to_string(p.pid()), 0), 0U) << json;
  for (const char* key : {"\"cpus\":\"", "\"uptime_s\":", "\"lanes\":[]", "\"sockets\":{\"open\":0",
                          "\"bytes_from_guest\":0", "\"bytes_to_guest\":0", "\"bytes_tx_wire\":0",
                          "\"bytes_rx_wire\":0", "\"rx_backpressure_events\":0",
                          "\"bad_descriptors\":0", "\"guests_reclaimed\":0"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << " in " << json;
  }
  p.signal(SIGTERM);
  auto status = p.wait(kTimeoutMs);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_FALSE(tosec::test::path_exists(dir.file("side.sock")));
  EXPECT_FALSE(tosec::test::path_exists(dir.file("st.sock")));
}

TEST(TovmBinary, RefusesARegionTooSmallForTheConfiguration) {
  TempDir dir;
  tosec::test::ServerThread ivs(host::IvshmemServerConfig{dir.file("ivs.sock"), 1}, 1 << 20);
  ASSERT_TRUE(ivs.ok()) << ivs.error();
  ChildProcess p = ChildProcess::spawn({TOSEC_TOVM_BIN, "--guest", "g", "--ivshmem",
                                        dir.file("ivs.sock"), "--sidecar", dir.file("side.sock")},
                                       dir.file("out"), dir.file("err"));
  auto status = p.wait(kTimeoutMs);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  const std::string err = tosec::test::slurp(dir.file("err"));
  EXPECT_NE(err.find("guest region is 1048576 bytes"), std::string::npos) << err;
  EXPECT_EQ(tosec::test::slurp(dir.file("out")), "");
}

TEST(TovmOptions, DefaultsAndErrors) {
  {
    const char* argv[] = {"tovm", "--guest", "g", "--ivshmem", "i", "--sidecar", "s", nullptr};
    auto o = parse_tovm_options(7, const_cast<char* const*>(argv));
    ASSERT_TRUE(o) << o.error().message;
    EXPECT_EQ(o->channel.lanes, rpc::GuestChannelConfig{}.lanes);
    EXPECT_EQ(o->channel.rx_chunks, rpc::GuestChannelConfig{}.rx_chunks);
    EXPECT_EQ(o->spin_ns, 0);
    EXPECT_EQ(o->workers, 1U);
  }
  {
    const char* argv[] = {"tovm",      "--guest", "g",       "--ivshmem", "i",
                          "--sidecar", "s",       "--lanes", "x",         nullptr};
    auto o = parse_tovm_options(9, const_cast<char* const*>(argv));
    ASSERT_FALSE(o);
    EXPECT_NE(o.error().message.find("--lanes"), std::string::npos);
  }
  {
    // Every numeric flag reaches its own field (one table row each in options.cpp).
    const char* argv[] = {"tovm",
                          "--guest=g",
                          "--ivshmem=i",
                          "--sidecar=s",
                          "--lanes=3",
                          "--max-sockets=5",
                          "--ring-slots=8",
                          "--socket-rx-entries=16",
                          "--chunk-size=128",
                          "--tx-chunks-per-lane=7",
                          "--rx-chunks=9",
                          "--workers=2",
                          "--spin-ns=11",
                          nullptr};
    auto o = parse_tovm_options(13, const_cast<char* const*>(argv));
    ASSERT_TRUE(o) << o.error().message;
    EXPECT_EQ(o->channel.lanes, 3U);
    EXPECT_EQ(o->channel.max_sockets, 5U);
    EXPECT_EQ(o->channel.ring_slots, 8U);
    EXPECT_EQ(o->channel.socket_rx_entries, 16U);
    EXPECT_EQ(o->channel.chunk_size, 128U);
    EXPECT_EQ(o->channel.tx_chunks_per_lane, 7U);
    EXPECT_EQ(o->channel.rx_chunks, 9U);
    EXPECT_EQ(o->workers, 2U);
    EXPECT_EQ(o->spin_ns, 11);
  }
  {
    const char* argv[] = {"tovm", "--ivshmem", "i", "--sidecar", "s", nullptr};
    auto o = parse_tovm_options(5, const_cast<char* const*>(argv));
    ASSERT_FALSE(o);
    EXPECT_NE(o.error().message.find("--guest"), std::string::npos);
  }
}

}  // namespace
}  // namespace tosec::tovm
