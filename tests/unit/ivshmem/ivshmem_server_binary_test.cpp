// The real tosec-ivshmem-server binary: flags, exit codes, foreground and daemon lifecycles,
// cleanup on SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "ivshmem_test_support.h"
#include "tosec/rpc/ivshmem_client.h"

#ifndef TOSEC_IVSHMEM_SERVER_BIN
#error "TOSEC_IVSHMEM_SERVER_BIN must name the server binary"
#endif

namespace tosec::host {
namespace {

using test::ChildProcess;
using test::TempDir;

constexpr int kTimeoutMs = 5000;

struct ServerRun {
  ChildProcess proc;
  std::string out, err;  // paths
};

ServerRun start(const TempDir& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv{TOSEC_IVSHMEM_SERVER_BIN};
  for (const auto& a : args) argv.push_back(a);
  ServerRun r{ChildProcess::spawn(argv, dir.file("stdout"), dir.file("stderr")), dir.file("stdout"),
              dir.file("stderr")};
  EXPECT_TRUE(r.proc.started());
  return r;
}

// Runs to completion; returns the exit code (-1 if it did not exit normally in time).
int run_to_exit(ServerRun& r) {
  auto st = r.proc.wait(kTimeoutMs);
  if (!st || !WIFEXITED(*st)) return -1;
  return WEXITSTATUS(*st);
}

TEST(IvshmemServerBinary, HelpExitsZero) {
  TempDir dir;
  ServerRun r = start(dir, {"-h"});
  EXPECT_EQ(run_to_exit(r), 0);
  EXPECT_NE(test::slurp(r.out).find("Usage:"), std::string::npos);
}

TEST(IvshmemServerBinary, BadFlagsExitOneWithAClearMessage) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"-x"}, "unknown option -x"},
      {{"-n", "100", "-F"}, "too many vectors"},
      {{"-l", "abc", "-F"}, "invalid size"},
      {{"-v"}, "-v needs -F"},
  };
  for (const auto& [args, needle] : cases) {
    TempDir dir;
    ServerRun r = start(dir, args);
    EXPECT_EQ(run_to_exit(r), 1) << args[0];
    const std::string err = test::slurp(r.err);
    EXPECT_NE(err.find(needle), std::string::npos) << err;
    EXPECT_NE(err.find("Try '"), std::string::npos) << err;
  }
}

TEST(IvshmemServerBinary, ForegroundServesAndCleansUpOnSigterm) {
  TempDir dir;
  const std::string sock = dir.file("s.sock");
  const std::string shm = test::unique_name("tosec-ivs-bin");
  ServerRun r = start(dir, {"-F", "-v", "-S", sock, "-M", shm, "-l", "3M", "-n", "2"});
  ASSERT_TRUE(test::wait_until([&] { return test::path_exists(sock); }, kTimeoutMs))
      << test::slurp(r.err);
  {
    rpc::IvshmemClient a({2, kTimeoutMs}), b({2, kTimeoutMs});
    ASSERT_TRUE(a.connect(sock).ok());
    ASSERT_TRUE(b.connect(sock).ok());
    EXPECT_EQ(a.region().size(), 4U << 20) << "3M rounds up to a power of two";
    ASSERT_TRUE(a.wait_for_peer(b.self_id(), kTimeoutMs).ok());
    ASSERT_TRUE(a.doorbells().ring(b.self_id(), 1).ok());
    auto rung = b.doorbells().wait(1, 2'000'000'000);
    ASSERT_TRUE(rung.ok());
    EXPECT_TRUE(*rung);
  }
  EXPECT_TRUE(test::path_exists("/dev/shm/" + shm));
  EXPECT_TRUE(test::wait_until(
      [&] { return test::slurp(r.out).find("peer 0 left") != std::string::npos; }, kTimeoutMs))
      << "verbose mode logs departures: " << test::slurp(r.out);
  r.proc.signal(SIGTERM);
  EXPECT_EQ(run_to_exit(r), 0);
  EXPECT_FALSE(test::path_exists(sock)) << "socket unlinked";
  EXPECT_FALSE(test::path_exists("/dev/shm/" + shm)) << "shm object we created is unlinked";
  EXPECT_NE(test::slurp(r.err).find("not a power of two"), std::string::npos);
  const std::string out = test::slurp(r.out);
  EXPECT_NE(out.find("peer 0 joined"), std::string::npos) << out;
  EXPECT_NE(out.find("peer 1 left"), std::string::npos) << out;
}

TEST(IvshmemServerBinary, SigintAlsoStopsCleanly) {
  TempDir dir;
  const std::string sock = dir.file("s.sock");
  ServerRun r = start(dir, {"-F", "-S", sock, "-m", dir.path(), "-l", "64K"});
  ASSERT_TRUE(test::wait_until([&] { return test::path_exists(sock); }, kTimeoutMs));
  r.proc.signal(SIGINT);
  EXPECT_EQ(run_to_exit(r), 0);
  EXPECT_FALSE(test::path_exists(sock));
}

TEST(IvshmemServerBinary, DaemonIsReadyWhenTheParentExits) {
  TempDir dir;
  const std::string sock = dir.file("d.sock");
  const std::string pid_file = dir.file("d.pid");
  const std::string shm = test::unique_name("tosec-ivs-bin");
  ServerRun r = start(dir, {"-S", sock, "-M", shm, "-l", "1M", "-p", pid_file});
  ASSERT_EQ(run_to_exit(r), 0) << test::slurp(r.err);
  // No waiting: the socket and the pid file exist once the parent returned.
  ASSERT_TRUE(test::path_exists(sock));
  const pid_t pid = static_cast<pid_t>(std::stol(test::slurp(pid_file)));
  test::PidGuard guard(pid);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(::kill(pid, 0), 0);
  EXPECT_NE(::getsid(pid), ::getsid(0)) << "the daemon runs in its own session";
  {
    rpc::IvshmemClient c;
    auto s = c.connect(sock);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(c.region().size(), 1U << 20);
  }
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  EXPECT_TRUE(test::wait_until([&] { return test::process_gone(pid); }, kTimeoutMs));
  guard.release();
  EXPECT_FALSE(test::path_exists(sock));
  EXPECT_FALSE(test::path_exists(pid_file)) << "pid file removed on clean exit";
  EXPECT_FALSE(test::path_exists("/dev/shm/" + shm));
}

TEST(IvshmemServerBinary, DaemonStartupFailureIsReportedByTheParent) {
  TempDir dir;
  const std::string sock = dir.file("d.sock");
  ServerRun r = start(dir, {"-S", sock, "-m", dir.path(), "-p", dir.file("no/such/dir/x.pid")});
  EXPECT_EQ(run_to_exit(r), 1);
  EXPECT_NE(test::slurp(r.err).find("cannot write pid file"), std::string::npos)
      << test::slurp(r.err);
  EXPECT_TRUE(test::wait_until([&] { return !test::path_exists(sock); }, kTimeoutMs))
      << "the failed daemon cleaned up its socket";
}

TEST(IvshmemServerBinary, SecondServerOnTheSameSocketIsRefused) {
  TempDir dir;
  const std::string sock = dir.file("s.sock");
  ServerRun first = start(dir, {"-F", "-S", sock, "-m", dir.path(), "-l", "64K"});
  ASSERT_TRUE(test::wait_until([&] { return test::path_exists(sock); }, kTimeoutMs));
  TempDir dir2;
  ServerRun second = start(dir2, {"-F", "-S", sock, "-m", dir.path(), "-l", "64K"});
  EXPECT_EQ(run_to_exit(second), 1);
  EXPECT_NE(test::slurp(second.err).find("already listening"), std::string::npos);
  EXPECT_TRUE(test::path_exists(sock)) << "the first server's socket is untouched";
}

TEST(IvshmemServerBinary, StaleSocketFromAKilledServerIsReplaced) {
  TempDir dir;
  const std::string sock = dir.file("s.sock");
  ServerRun first = start(dir, {"-F", "-S", sock, "-m", dir.path(), "-l", "64K"});
  ASSERT_TRUE(test::wait_until([&] { return test::path_exists(sock); }, kTimeoutMs));
  first.proc.signal(SIGKILL);
  ASSERT_TRUE(first.proc.wait(kTimeoutMs).has_value());
  ASSERT_TRUE(test::path_exists(sock)) << "SIGKILL leaves the socket behind";
  TempDir dir2;
  ServerRun second = start(dir2, {"-F", "-S", sock, "-m", dir.path(), "-l", "64K"});
  rpc::IvshmemClient c;
  ASSERT_TRUE(test::wait_until([&] { return c.connect(sock).ok(); }, kTimeoutMs))
      << test::slurp(second.err);
}

}  // namespace
}  // namespace tosec::host
