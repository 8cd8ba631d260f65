#include "tosec/cli/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tosec/cli/launch.h"

namespace tosec::cli {
namespace {

int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

TEST(CliSpawn, MissingProgramIsReportedNotExitCode127) {
  SpawnSpec s;
  s.argv = {"/nonexistent/program"};
  s.env = current_environment();
  auto r = spawn(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOENT);
  EXPECT_NE(r.error().message.find("/nonexistent/program"), std::string::npos);
}

TEST(CliSpawn, ChildGetsOnlyStdioAndTheGivenEnvironment) {
  // A non-close-on-exec fd in the parent must not leak into the child.
  const int leak = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leak, 3);
  char path[] = "/tmp/tosec-cli-test.XXXXXX";
  const int out = ::mkstemp(path);
  ASSERT_GE(out, 0);
  SpawnSpec s;
  s.argv = {"/bin/sh", "-c", "ls /proc/self/fd | wc -l; echo \"$MARK\""};
  s.env = {"MARK=hello", "PATH=/usr/bin:/bin"};
  s.stdout_fd = out;
  auto r = spawn(s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(exit_code_from_wait_status(wait_for(*r)), 0);
  ::close(out);
  ::close(leak);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  ::unlink(path);
  // ls sees 0, 1, 2 and its own directory fd: 4 entries.
  EXPECT_EQ(ss.str(), "4\nhello\n");
}

TEST(CliSpawn, NewProcessGroup) {
  SpawnSpec s;
  s.argv = {"/bin/sleep", "30"};
  s.env = current_environment();
  s.new_process_group = true;
  auto r = spawn(s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(::getpgid(*r), *r);
  pid_t pid = *r;
  stop_processes({&pid}, std::chrono::milliseconds(5000));
  EXPECT_EQ(pid, -1);
}

TEST(CliSpawn, SignalMaskAndIgnoredSignalsAreReset) {
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &set, &old);
  auto old_int = ::signal(SIGINT, SIG_IGN);
  SpawnSpec s;
  s.argv = {"/bin/sleep", "30"};
  s.env = current_environment();
  auto r = spawn(s);
  ::signal(SIGINT, old_int);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(r.ok());
  ::kill(*r, SIGINT);  // would be ignored if the disposition leaked
  EXPECT_EQ(exit_code_from_wait_status(wait_for(*r)), 128 + SIGINT);
}

TEST(CliStopProcesses, EscalatesToSigkill) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  SpawnSpec s;
  s.argv = {"/bin/sh", "-c", "trap '' TERM; echo ready; exec 1>&-; while :; do sleep 1; done"};
  s.env = current_environment();
  s.stdout_fd = p[1];
  auto r = spawn(s);
  ::close(p[1]);
  ASSERT_TRUE(r.ok());
  char buf[8] = {};
  ASSERT_EQ(::read(p[0], buf, 6), 6);  // the trap is installed: SIGTERM alone cannot stop it
  ::close(p[0]);
  pid_t pid = *r;
  stop_processes({&pid}, std::chrono::milliseconds(100));
  EXPECT_EQ(pid, -1);
  EXPECT_EQ(::kill(*r, 0), -1);  // reaped: the pid is gone
}

TEST(CliDescribe, WaitStatuses) {
  EXPECT_EQ(describe_wait_status(3 << 8), "exited with status 3");
  EXPECT_EQ(describe_wait_status(SIGKILL), "was killed by signal 9 (Killed)");
}

TEST(CliTailFile, LastLinesFromOffset) {
  char path[] = "/tmp/tosec-cli-tail.XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "skip\na\nb\nc\nd\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  EXPECT_EQ(tail_file(path, 5, 2), "  c\n  d\n");
  EXPECT_EQ(tail_file(path, 5, 10), "  a\n  b\n  c\n  d\n");
  ::unlink(path);
  EXPECT_NE(tail_file(path, 0, 3).find("no log"), std::string::npos);
}

}  // namespace
}  // namespace tosec::cli
