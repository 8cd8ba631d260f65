#include "tosec/cli/launch.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>

namespace tosec::cli {
namespace {

std::string value_of(const std::vector<std::string>& env, const std::string& key) {
  for (const auto& e : env) {
    if (e.starts_with(key + "=")) return e.substr(key.size() + 1);
  }
  return "<unset>";
}

AppEnv sample() {
  AppEnv a;
  a.preload = "/opt/tosec/lib/libtosec-preload.so";
  a.ivshmem_socket = "/run/tosec/guests/g0/ivshmem.sock";
  a.toe_socket = "/run/tosec/guests/g0/sidecar.sock";
  a.guest = "g0";
  return a;
}

TEST(CliAppEnv, SetsThePlatformVariables) {
  const auto env = build_app_env({"PATH=/usr/bin", "HOME=/root"}, sample());
  EXPECT_EQ(value_of(env, "LD_PRELOAD"), "/opt/tosec/lib/libtosec-preload.so");
  EXPECT_EQ(value_of(env, "TOSEC_IVSHMEM_SOCKET"), "/run/tosec/guests/g0/ivshmem.sock");
  EXPECT_EQ(value_of(env, "TOSEC_TOE_SOCKET"), "/run/tosec/guests/g0/sidecar.sock");
  EXPECT_EQ(value_of(env, "TOSEC_GUEST"), "g0");
  EXPECT_EQ(value_of(env, "TOSEC_EXCLUDE"), "<unset>");
  EXPECT_EQ(value_of(env, "TOSEC_SPIN_NS"), "<unset>");  // the shim's default
  EXPECT_EQ(value_of(env, "PATH"), "/usr/bin");
  EXPECT_EQ(value_of(env, "HOME"), "/root");
}

TEST(CliAppEnv, PrependsToAnExistingPreloadOnce) {
  auto env = build_app_env({"LD_PRELOAD=/usr/lib/libfoo.so"}, sample());
  EXPECT_EQ(value_of(env, "LD_PRELOAD"), "/opt/tosec/lib/libtosec-preload.so:/usr/lib/libfoo.so");
  // A nested `tosec run` does not load the shim twice.
  env = build_app_env(env, sample());
  EXPECT_EQ(value_of(env, "LD_PRELOAD"), "/opt/tosec/lib/libtosec-preload.so:/usr/lib/libfoo.so");
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& e) { return e.starts_with("LD_PRELOAD="); }),
            1);
  env = build_app_env({"LD_PRELOAD="}, sample());
  EXPECT_EQ(value_of(env, "LD_PRELOAD"), "/opt/tosec/lib/libtosec-preload.so");
}

TEST(CliAppEnv, ReplacesStaleTosecVariablesAndJoinsExclude) {
  AppEnv a = sample();
  a.exclude = {"127.0.0.0/8", "port:53"};
  a.spin_ns = 0;
  const auto env =
      build_app_env({"TOSEC_GUEST=old", "TOSEC_EXCLUDE=1.2.3.4", "TOSEC_SPIN_NS=9"}, a);
  EXPECT_EQ(value_of(env, "TOSEC_GUEST"), "g0");
  EXPECT_EQ(value_of(env, "TOSEC_SPIN_NS"), "0");
  EXPECT_EQ(value_of(env, "TOSEC_EXCLUDE"), "127.0.0.0/8,port:53");
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& e) { return e.starts_with("TOSEC_GUEST="); }),
            1);
}

TEST(CliPreload, EnvironmentOverrideWins) {
  auto r = resolve_preload("/x/custom.so", "/opt/tosec/bin",
                           [](const std::string& p) { return p == "/x/custom.so"; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "/x/custom.so");
}

TEST(CliPreload, MissingOverrideIsAnErrorNotAFallback) {
  auto r =
      resolve_preload("/x/custom.so", "/opt/tosec/bin", [](const std::string&) { return false; });
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("TOSEC_PRELOAD=/x/custom.so does not exist"), std::string::npos);
}

TEST(CliPreload, BuildLayoutThenInstalled) {
  std::set<std::string> files = {"/b/bin/../lib/libtosec-preload.so",
                                 "/usr/local/lib/libtosec-preload.so"};
  auto exists = [&](const std::string& p) { return files.count(p) != 0; };
  auto r = resolve_preload(nullptr, "/b/bin", exists);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "/b/bin/../lib/libtosec-preload.so");  // realpath fails: kept as is
  r = resolve_preload("", "/elsewhere", exists);       // empty TOSEC_PRELOAD counts as unset
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "/usr/local/lib/libtosec-preload.so");
}

TEST(CliPreload, NotFoundNamesEveryPathTried) {
  auto r = resolve_preload(nullptr, "/b/bin", [](const std::string&) { return false; });
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("/b/bin/../lib/libtosec-preload.so"), std::string::npos);
  EXPECT_NE(r.error().message.find("/usr/local/lib/libtosec-preload.so"), std::string::npos);
  EXPECT_NE(r.error().message.find("TOSEC_PRELOAD"), std::string::npos);
}

TEST(CliBinaries, NextToTosecOrFromEnv) {
  auto all = [](const std::string&) { return true; };
  auto b = resolve_binaries(nullptr, "/opt/tosec/bin", all);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ivshmem_server, "/opt/tosec/bin/tosec-ivshmem-server");
  EXPECT_EQ(b->tovm, "/opt/tosec/bin/tosec-tovm");
  b = resolve_binaries("/custom", "/opt/tosec/bin", all);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->tovm, "/custom/tosec-tovm");
  auto no_tovm = [](const std::string& p) { return !p.ends_with("tosec-tovm"); };
  b = resolve_binaries(nullptr, "/opt/tosec/bin", no_tovm);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("/opt/tosec/bin/tosec-tovm not found"), std::string::npos);
  EXPECT_NE(b.error().message.find("TOSEC_BIN_DIR"), std::string::npos);
}

int wait_status_of(void (*child)()) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    child();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(CliExitStatus, ExitCodesPassThroughAndSignalsMapTo128PlusN) {
  EXPECT_EQ(exit_code_from_wait_status(wait_status_of([] { ::_exit(0); })), 0);
  EXPECT_EQ(exit_code_from_wait_status(wait_status_of([] { ::_exit(7); })), 7);
  EXPECT_EQ(exit_code_from_wait_status(wait_status_of([] { ::_exit(255); })), 255);
  EXPECT_EQ(exit_code_from_wait_status(wait_status_of([] { ::raise(SIGKILL); })), 128 + 9);
  EXPECT_EQ(exit_code_from_wait_status(wait_status_of([] {
              ::signal(SIGTERM, SIG_DFL);
              ::raise(SIGTERM);
            })),
            128 + 15);
}

}  // namespace
}  // namespace tosec::cli
