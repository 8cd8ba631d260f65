// End-to-end tests of the tosec CLI: runs the real `tosec` binary with the real ivshmem server
// and a fake TOE (or the real tosec-tovm when it is built), and checks exit codes, the
// application's environment, signal handling and that nothing is left behind (processes,
// sockets, shm objects, runtime directories). Every wait is bounded and fails instead of hanging.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tosec/cli/platform.h"
#include "tosec/cli/status.h"
#include "tosec/rpc/cpu_list.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using tosec::cli::parse_json;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Outcome {
  int code = -1;  // exit code, 128+N if killed
  std::string out;
  std::string err;
};

// Processes whose command line mentions `needle`, other than ourselves (zombies excluded).
std::vector<pid_t> processes_mentioning(const std::string& needle) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    if (pid == ::getpid()) continue;
    std::string cmd = slurp(e.path().string() + "/cmdline");
    for (auto& c : cmd) {
      if (c == '\0') c = ' ';
    }
    const std::string stat = slurp(e.path().string() + "/stat");
    const auto rp = stat.rfind(')');
    const bool zombie = rp != std::string::npos && rp + 2 < stat.size() && stat[rp + 2] == 'Z';
    if (!zombie && cmd.find(needle) != std::string::npos) out.push_back(pid);
  }
  return out;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tosec-cli-it.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ + "/bin");
    fs::create_directories(root_ + "/tmp");
    fs::create_symlink(TOSEC_IVSHMEM_SERVER_BIN, root_ + "/bin/tosec-ivshmem-server");
    fs::create_symlink(TOSEC_FAKE_TOVM, root_ + "/bin/tosec-tovm");
    // The fake TOE and a do-nothing preload; tests on the real TOE override these.
    env_["TOSEC_BIN_DIR"] = root_ + "/bin";
    env_["TOSEC_PRELOAD"] = TOSEC_DUMMY_PRELOAD;
    env_["TMPDIR"] = root_ + "/tmp";
  }

  void TearDown() override {
    // Clean up even after a failure: stop a platform we may have left up, kill strays.
    if (fs::exists(root_ + "/rt/supervisor.pid")) tosec({"down", "--runtime-dir", root_ + "/rt"});
    for (pid_t p : processes_mentioning(root_)) ::kill(p, SIGKILL);
    for (const char* g : {"g0", "g1", "default"}) {
      ::shm_unlink(tosec::cli::persistent_shm_name(root_ + "/rt", g).c_str());
    }
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::vector<std::string> environment() const {
    std::map<std::string, std::string> merged;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string s(*e);
      const auto eq = s.find('=');
      if (eq != std::string::npos) merged[s.substr(0, eq)] = s.substr(eq + 1);
    }
    for (const auto& [k, v] : env_) {
      if (v.empty()) {
        merged.erase(k);
      } else {
        merged[k] = v;
      }
    }
    std::vector<std::string> out;
    for (const auto& [k, v] : merged) out.push_back(k + "=" + v);
    return out;
  }

  // Starts tosec with args; stdout/stderr go to files in root_.
  pid_t start(const std::vector<std::string>& args) {
    const std::string out = root_ + "/out." + std::to_string(n_);
    const std::string err = root_ + "/err." + std::to_string(n_);
    ++n_;
    std::vector<std::string> argv = {cli_};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto env = environment();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);  // keep test signals away from the runner
      const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(o, 1);
      ::dup2(e, 2);
      std::vector<char*> a;
      for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      std::vector<char*> en;
      for (const auto& s : env) en.push_back(const_cast<char*>(s.c_str()));
      en.push_back(nullptr);
      ::execve(a[0], a.data(), en.data());
      ::_exit(99);
    }
    outputs_[pid] = {out, err};
    return pid;
  }

  Outcome finish(pid_t pid, std::chrono::seconds limit = std::chrono::seconds(60)) {
    Outcome o;
    int status = 0;
    const bool done = wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, limit);
    if (!done) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      ADD_FAILURE() << "tosec did not finish within " << limit.count() << " s";
    }
    o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    o.out = slurp(outputs_[pid].first);
    o.err = slurp(outputs_[pid].second);
    return o;
  }

  Outcome tosec(const std::vector<std::string>& args,
                std::chrono::seconds limit = std::chrono::seconds(60)) {
    const pid_t pid = start(args);
    last_pid_ = pid;
    return finish(pid, limit);
  }

  // Nothing of a `tosec run` with pid `tosec_pid` remains: no private runtime dir, no process
  // using our paths, no shm object.
  void expect_no_leftovers(pid_t tosec_pid) {
    EXPECT_TRUE(
        wait_until([&] { return processes_mentioning(root_).empty(); }, std::chrono::seconds(20)))
        << "stray processes: " << processes_mentioning(root_).size();
    EXPECT_TRUE(fs::is_empty(root_ + "/tmp")) << "runtime dir left in " << root_ << "/tmp";
    const std::string prefix = "tosec-run-" + std::to_string(tosec_pid) + "-";
    for (const auto& e : fs::directory_iterator("/dev/shm")) {
      EXPECT_FALSE(e.path().filename().string().starts_with(prefix)) << e.path();
    }
  }

  void write_config(const std::string& extra_guest_lines = "") {
    std::ofstream(root_ + "/cfg.toml")
        << "[platform]\nruntime_dir = \"" << root_ << "/rt\"\n"
        << "[[guest]]\nname = \"g0\"\nlanes = 2\nrx_chunks = 64\n"
        << "exclude = [\"127.0.0.0/8\"]\n"
        << extra_guest_lines << "[[guest]]\nname = \"g1\"\nlanes = 2\nrx_chunks = 64\n";
  }

  void use_real_tovm() {
    fs::remove(root_ + "/bin/tosec-tovm");
    fs::create_symlink(TOSEC_REAL_TOVM, root_ + "/bin/tosec-tovm");
    env_["TOSEC_BIN_DIR"] = root_ + "/bin";
  }

  std::string root_;
  std::string cli_ = TOSEC_CLI_BIN;
  std::map<std::string, std::string> env_;
  std::map<pid_t, std::pair<std::string, std::string>> outputs_;
  pid_t last_pid_ = -1;
  int n_ = 0;
};

bool have_real_tovm() {
  return std::string(TOSEC_REAL_TOVM).size() > 0 && fs::exists(TOSEC_REAL_TOVM);
}

TEST_F(CliTest, RunPassesTheExitStatusAndLeavesNothingBehind) {
  const Outcome o = tosec({"run", "--embedded", "--", "/bin/sh", "-c", "exit 7"});
  EXPECT_EQ(o.code, 7) << o.err;
  expect_no_leftovers(last_pid_);
}

TEST_F(CliTest, RunTrue) {
  const Outcome o = tosec({"run", "--embedded", "--", "true"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(o.err, "");
  expect_no_leftovers(last_pid_);
}

TEST_F(CliTest, RunGivesTheApplicationItsEnvironment) {
  write_config();
  const Outcome o = tosec({"run", "--embedded", "-c", root_ + "/cfg.toml", "--guest", "g0",
                           "--exclude", "port:53", "--", "/bin/sh", "-c",
                           "echo \"$LD_PRELOAD|$TOSEC_GUEST|$TOSEC_EXCLUDE\"; "
                           "test -S \"$TOSEC_IVSHMEM_SOCKET\" && test -S \"$TOSEC_TOE_SOCKET\" && "
                           "echo sockets"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(o.out, std::string(TOSEC_DUMMY_PRELOAD) + "|g0|127.0.0.0/8,port:53\nsockets\n");
  expect_no_leftovers(last_pid_);
}

TEST_F(CliTest, RunPassesTheToeItsGeometry) {
  write_config();
  env_["FAKE_TOVM_ARGS_FILE"] = root_ + "/tovm.args";
  const Outcome o = tosec({"run", "--embedded", "-c", root_ + "/cfg.toml", "--", "true"});
  EXPECT_EQ(o.code, 0) << o.err;
  const std::string args = slurp(root_ + "/tovm.args");
  EXPECT_NE(args.find("--guest\ng0\n"), std::string::npos) << args;
  EXPECT_NE(args.find("--lanes\n2\n"), std::string::npos) << args;
  EXPECT_NE(args.find("--rx-chunks\n64\n"), std::string::npos) << args;
}

TEST_F(CliTest, RunCommandKilledBySignalGives128PlusN) {
  const Outcome o = tosec({"run", "--embedded", "--", "/bin/sh", "-c", "kill -KILL $$"});
  EXPECT_EQ(o.code, 128 + SIGKILL) << o.err;
  expect_no_leftovers(last_pid_);
}

TEST_F(CliTest, RunCommandNotFoundIs127) {
  const Outcome o = tosec({"run", "--embedded", "--", "/nonexistent/cmd"});
  EXPECT_EQ(o.code, 127);
  EXPECT_NE(o.err.find("/nonexistent/cmd: command not found"), std::string::npos) << o.err;
  expect_no_leftovers(last_pid_);
}

TEST_F(CliTest, RunForwardsSigtermToTheCommand) {
  const std::string marker = root_ + "/started";
  const pid_t pid = start(
      {"run", "--embedded", "--", "/bin/sh", "-c",
       "trap 'echo got-term; exit 42' TERM; echo > " + marker + "; while :; do sleep 0.05; done"});
  ASSERT_TRUE(wait_until([&] { return fs::exists(marker); }, std::chrono::seconds(30)));
  ::kill(pid, SIGTERM);
  const Outcome o = finish(pid);
  EXPECT_EQ(o.code, 42) << o.err;
  EXPECT_EQ(o.out, "got-term\n");
  expect_no_leftovers(pid);
}

TEST_F(CliTest, KilledTosecTakesItsPlatformAlong) {
  const std::string marker = root_ + "/started";
  const pid_t pid = start(
      {"run", "--embedded", "--", "/bin/sh", "-c", "echo $$ > " + marker + "; exec sleep 30"});
  ASSERT_TRUE(wait_until([&] { return fs::exists(marker) && !slurp(marker).empty(); },
                         std::chrono::seconds(30)));
  EXPECT_GE(processes_mentioning(root_).size(), 2U);  // ivshmem server + TOE
  ::kill(pid, SIGKILL);
  finish(pid);
  // PR_SET_PDEATHSIG: the platform and the command die with tosec.
  EXPECT_TRUE(
      wait_until([&] { return processes_mentioning(root_).empty(); }, std::chrono::seconds(20)));
  const pid_t app = std::stoi(slurp(marker));
  EXPECT_TRUE(wait_until(
      [&] {
        const std::string st = slurp("/proc/" + std::to_string(app) + "/stat");
        return st.empty() || st.find(") Z") != std::string::npos;
      },
      std::chrono::seconds(20)));
  // The next run sweeps the dead run's directory.
  const Outcome o = tosec({"run", "--embedded", "--", "true"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_TRUE(fs::is_empty(root_ + "/tmp"));
}

TEST_F(CliTest, StaleRunDirsAndTheirRegionsAreSwept) {
  // What a SIGKILLed run whose ivshmem server was SIGKILLed too leaves behind.
  const std::string stale = root_ + "/tmp/tosec-run.AbC123";
  fs::create_directories(stale + "/guests/default");
  std::ofstream(stale + "/run.lock") << "";
  const std::string shm = "/tosec-run-1-AbC123-default";
  const int fd = ::shm_open(shm.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  const Outcome o = tosec({"run", "--embedded", "--", "true"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists("/dev/shm" + shm));
  ::shm_unlink(shm.c_str());
}

TEST_F(CliTest, FailingToeIsAClearError) {
  env_["FAKE_TOVM_MODE"] = "fail";
  const Outcome o = tosec({"run", "--embedded", "--", "true"});
  EXPECT_EQ(o.code, 125);
  EXPECT_NE(o.err.find("tosec-tovm exited with status 3 before it was ready"), std::string::npos)
      << o.err;
  EXPECT_NE(o.err.find("cannot attach region (simulated)"), std::string::npos) << o.err;
  expect_no_leftovers(last_pid_);
}

TEST_F(CliTest, SilentToeTimesOutWithItsLog) {
  env_["FAKE_TOVM_MODE"] = "silent";
  const Outcome o = tosec({"run", "--embedded", "--", "true"});
  EXPECT_EQ(o.code, 125);
  EXPECT_NE(o.err.find("did not print 'tosec-tovm: ready' within 10 s"), std::string::npos)
      << o.err;
  EXPECT_NE(o.err.find("fake tosec-tovm for guest default starting"), std::string::npos) << o.err;
  expect_no_leftovers(last_pid_);
}

TEST_F(CliTest, MissingPreloadNamesThePathsTried) {
  if (fs::exists("/usr/local/lib/libtosec-preload.so")) GTEST_SKIP() << "a shim is installed";
  env_["TOSEC_PRELOAD"] = "";
  // A copy of tosec in a directory with no ../lib/libtosec-preload.so next to it.
  fs::copy_file(TOSEC_CLI_BIN, root_ + "/bin/tosec");
  cli_ = root_ + "/bin/tosec";
  const Outcome o = tosec({"run", "--embedded", "--", "true"});
  EXPECT_EQ(o.code, 125);
  EXPECT_NE(o.err.find(root_ + "/bin/../lib/libtosec-preload.so"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("/usr/local/lib/libtosec-preload.so"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("TOSEC_PRELOAD"), std::string::npos) << o.err;
  expect_no_leftovers(last_pid_);
}

TEST_F(CliTest, BadConfigIsExit2WithPosition) {
  std::ofstream(root_ + "/bad.toml") << "[[guest]]\nname = \"g\"\nlanse = 3\n";
  const Outcome o = tosec({"run", "-c", root_ + "/bad.toml", "--", "true"});
  EXPECT_EQ(o.code, 2);
  EXPECT_EQ(o.err, "tosec: " + root_ +
                       "/bad.toml:3:1: guest[0].lanse: unknown key (did you "
                       "mean 'lanes'?)\n");
}

TEST_F(CliTest, HelpAndVersion) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"--help"},
                                                                {"run", "--help"},
                                                                {"up", "--help"},
                                                                {"down", "-h"},
                                                                {"status", "--help"},
                                                                {"stats", "--help"},
                                                                {"help", "run"}}) {
    const Outcome o = tosec(args);
    EXPECT_EQ(o.code, 0) << args[0];
    EXPECT_NE(o.out.find("Usage: tosec"), std::string::npos) << o.out;
  }
  const Outcome v = tosec({"--version"});
  EXPECT_EQ(v.code, 0);
  EXPECT_TRUE(v.out.starts_with("tosec ")) << v.out;
  EXPECT_EQ(tosec({"frobnicate"}).code, 2);
  EXPECT_EQ(tosec({}).code, 2);
}

TEST_F(CliTest, UpStatusRunDownRoundTripWithFakeToe) {
  write_config();
  const std::string cfg = root_ + "/cfg.toml";
  Outcome o = tosec({"status", "-c", cfg});
  EXPECT_EQ(o.code, 3);
  EXPECT_NE(o.err.find("no platform running in " + root_ + "/rt"), std::string::npos) << o.err;

  o = tosec({"up", "-c", cfg});
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(tosec({"up", "-c", cfg}).code, 1);  // already running

  o = tosec({"status", "-c", cfg});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_NE(o.out.find("g0 "), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("g1 "), std::string::npos) << o.out;

  o = tosec({"stats", "-c", cfg});
  EXPECT_EQ(o.code, 0) << o.err;
  auto j = parse_json(o.out);
  ASSERT_TRUE(j.ok()) << o.out;
  ASSERT_EQ(j->get("guests")->array.size(), 2U);
  EXPECT_EQ(j->get("guests")->array[0].get("guest")->string, "g0");
  const double toe_pid = j->get("guests")->array[0].get("pid")->number;
  // [tovm] mode = "shared" (the default): one TOE process serves both guests.
  EXPECT_EQ(j->get("guests")->array[1].get("pid")->number, toe_pid) << o.out;

  // `tosec run` joins the running platform (its sockets, its exclude list).
  o = tosec({"run", "-c", cfg, "--", "/bin/sh", "-c", "echo $TOSEC_IVSHMEM_SOCKET $TOSEC_EXCLUDE"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(o.out, root_ + "/rt/guests/g0/ivshmem.sock 127.0.0.0/8\n");
  EXPECT_TRUE(fs::is_empty(root_ + "/tmp"));  // no embedded platform was started

  // The supervisor restarts a crashed TOE.
  ::kill(static_cast<pid_t>(toe_pid), SIGKILL);
  EXPECT_TRUE(wait_until(
      [&] {
        Outcome s = tosec({"stats", "-c", cfg});
        auto v = parse_json(s.out);
        if (!v.ok()) return false;
        const auto* pid = v->get("guests")->array[0].get("pid");
        return pid != nullptr && pid->number != toe_pid;
      },
      std::chrono::seconds(30)));
  EXPECT_NE(slurp(root_ + "/rt/logs/supervisor.log").find("restarting in"), std::string::npos);

  o = tosec({"down", "-c", cfg});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_NE(o.out.find("stopped"), std::string::npos);
  o = tosec({"down", "-c", cfg});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_NE(o.out.find("no platform running"), std::string::npos);
  EXPECT_EQ(tosec({"status", "-c", cfg}).code, 3);
  EXPECT_TRUE(
      wait_until([&] { return processes_mentioning(root_).empty(); }, std::chrono::seconds(20)));
  EXPECT_FALSE(fs::exists(root_ + "/rt/guests"));
  EXPECT_FALSE(fs::exists(root_ + "/rt/supervisor.pid"));
  for (const char* g : {"g0", "g1"}) {
    EXPECT_FALSE(fs::exists("/dev/shm" + tosec::cli::persistent_shm_name(root_ + "/rt", g))) << g;
  }
}

TEST_F(CliTest, PerGuestModeStartsOneToeEachAndRestartsOnlyTheDeadOne) {
  write_config();
  const std::string cfg = root_ + "/cfg.toml";
  std::ofstream(cfg, std::ios::app) << "[tovm]\nmode = \"per-guest\"\nworkers = 2\n";
  ASSERT_EQ(tosec({"up", "-c", cfg}).code, 0);
  auto pids = [&] {
    auto v = parse_json(tosec({"stats", "-c", cfg}).out);
    std::vector<double> out;
    if (!v.ok()) return out;
    for (const auto& g : v->get("guests")->array) {
      if (const auto* p = g.get("pid")) out.push_back(p->number);
    }
    return out;
  };
  const auto before = pids();
  ASSERT_EQ(before.size(), 2U);
  EXPECT_NE(before[0], before[1]);
  ::kill(static_cast<pid_t>(before[1]), SIGKILL);
  EXPECT_TRUE(wait_until(
      [&] {
        const auto now = pids();
        return now.size() == 2 && now[1] != before[1];
      },
      std::chrono::seconds(30)));
  EXPECT_EQ(pids().at(0), before[0]) << "g0's TOE was not touched";
  EXPECT_EQ(tosec({"down", "-c", cfg}).code, 0);
  EXPECT_TRUE(
      wait_until([&] { return processes_mentioning(root_).empty(); }, std::chrono::seconds(20)));
}

TEST_F(CliTest, UpFailsClearlyWhenAToeCannotStart) {
  write_config();
  env_["FAKE_TOVM_MODE"] = "fail";
  const Outcome o = tosec({"up", "-c", root_ + "/cfg.toml"});
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("cannot attach region (simulated)"), std::string::npos) << o.err;
  EXPECT_EQ(tosec({"status", "-c", root_ + "/cfg.toml"}).code, 3);
  EXPECT_TRUE(
      wait_until([&] { return processes_mentioning(root_).empty(); }, std::chrono::seconds(20)));
}

TEST_F(CliTest, RealToeRunTrue) {
  if (!have_real_tovm()) GTEST_SKIP() << "tosec-tovm is not built yet (tovm/)";
  use_real_tovm();
  if (!fs::exists(TOSEC_REAL_PRELOAD)) GTEST_SKIP() << "libtosec-preload.so is not built yet";
  if (TOSEC_CLI_SANITIZED) GTEST_SKIP() << "sanitizer build: the shim cannot preload into sh";
  env_["TOSEC_PRELOAD"] = TOSEC_REAL_PRELOAD;
  const Outcome o = tosec({"run", "--embedded", "--", "true"});
  EXPECT_EQ(o.code, 0) << o.err;
  const Outcome s = tosec({"run", "--embedded", "--", "/bin/sh", "-c", "exit 7"});
  EXPECT_EQ(s.code, 7) << s.err;
  expect_no_leftovers(last_pid_);
}

// [tovm] cpus reaches the real TOE: its worker runs on the CPU named, and only there.
TEST_F(CliTest, RealToeRunsOnTheConfiguredCpu) {
  if (!have_real_tovm()) GTEST_SKIP() << "tosec-tovm is not built yet (tovm/)";
  use_real_tovm();
  cpu_set_t mine;
  ASSERT_EQ(::sched_getaffinity(0, sizeof mine, &mine), 0);
  const std::vector<unsigned> usable = tosec::rpc::cpus_in(mine);
  ASSERT_FALSE(usable.empty());
  const unsigned cpu = usable.back();  // the last CPU this test may use: not the default list
  std::ofstream(root_ + "/cpus.toml") << "[platform]\nruntime_dir = \"" << root_ << "/rt\"\n"
                                      << "[tovm]\ncpus = \"" << cpu << "\"\n";
  const std::string marker = root_ + "/started";
  const pid_t pid = start({"run", "--embedded", "-c", root_ + "/cpus.toml", "--", "/bin/sh", "-c",
                           "echo > " + marker + "; while :; do sleep 0.05; done"});
  ASSERT_TRUE(wait_until([&] { return fs::exists(marker); }, std::chrono::seconds(30)));
  std::string allowed;
  for (pid_t p : processes_mentioning(root_ + "/bin/tosec-tovm")) {
    std::istringstream status(slurp("/proc/" + std::to_string(p) + "/status"));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("Cpus_allowed_list:", 0) == 0) allowed = line.substr(line.find(':') + 2);
    }
  }
  ::kill(pid, SIGTERM);
  const Outcome o = finish(pid);
  EXPECT_EQ(allowed, std::to_string(cpu)) << o.err;
  expect_no_leftovers(pid);
}

TEST_F(CliTest, RealToeUpStatusDown) {
  if (!have_real_tovm()) GTEST_SKIP() << "tosec-tovm is not built yet (tovm/)";
  use_real_tovm();
  write_config();
  const std::string cfg = root_ + "/cfg.toml";
  // One shared TOE (the default mode), each guest on its own worker thread.
  std::ofstream(cfg, std::ios::app) << "[tovm]\nworkers = 2\n";
  Outcome o = tosec({"up", "-c", cfg});
  ASSERT_EQ(o.code, 0) << o.err << slurp(root_ + "/rt/logs/tovm.log");
  o = tosec({"status", "-c", cfg});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(o.out.find("unreachable"), std::string::npos) << o.out;
  // Each guest's worker and where it may run, from the TOE's own "cpus" (not pinned: all of
  // the TOE's CPUs, so a list that starts with a CPU number).
  for (const char* want : {"g0: TOE worker 0 on CPUs ", "g1: TOE worker 1 on CPUs "}) {
    const auto at = o.out.find(want);
    ASSERT_NE(at, std::string::npos) << want << " missing in:\n" << o.out;
    const auto list = at + std::string_view(want).size();
    EXPECT_TRUE(list < o.out.size() && std::isdigit(static_cast<unsigned char>(o.out[list])))
        << o.out;
  }
  o = tosec({"stats", "-c", cfg});
  EXPECT_EQ(o.code, 0) << o.err;
  auto j = parse_json(o.out);
  ASSERT_TRUE(j.ok()) << o.out;
  ASSERT_EQ(j->get("guests")->array.size(), 2U);
  double worker = 0;
  for (const auto& g : j->get("guests")->array) {
    EXPECT_EQ(g.get("error"), nullptr) << o.out;
    ASSERT_NE(g.get("pid"), nullptr) << o.out;
    EXPECT_EQ(g.get("pid")->number, j->get("guests")->array[0].get("pid")->number) << o.out;
    ASSERT_NE(g.get("worker"), nullptr) << o.out;
    EXPECT_EQ(g.get("worker")->number, worker++) << o.out;  // g0 on worker 0, g1 on worker 1
    EXPECT_NE(g.get("sockets"), nullptr) << o.out;
  }

  // A real application through the shim and the supervised TOE: a kernel listener here, a
  // Python client under `tosec run` (guest g1 has no exclude list, so 127.0.0.1 is offloaded).
  if (fs::exists(TOSEC_REAL_PRELOAD) && fs::exists("/usr/bin/python3") && !TOSEC_CLI_SANITIZED) {
    env_["TOSEC_PRELOAD"] = TOSEC_REAL_PRELOAD;
    const int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(ls, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(ls, 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
    std::thread server([ls] {
      pollfd p{ls, POLLIN, 0};
      if (::poll(&p, 1, 30'000) != 1) return;
      const int c = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
      char buf[16];
      if (c >= 0 && ::recv(c, buf, 4, MSG_WAITALL) == 4) {
        [[maybe_unused]] auto n = ::send(c, "pong", 4, MSG_NOSIGNAL);
      }
      if (c >= 0) ::close(c);
    });
    const std::string port = std::to_string(ntohs(a.sin_port));
    o = tosec({"run", "-c", cfg, "--guest", "g1", "--", "python3", "-c",
               "import socket; s = socket.create_connection(('127.0.0.1', " + port +
                   ")); s.sendall(b'ping'); print(s.recv(4).decode())"});
    server.join();
    ::close(ls);
    EXPECT_EQ(o.code, 0) << o.err;
    EXPECT_EQ(o.out, "pong\n") << o.err;
    o = tosec({"stats", "-c", cfg});
    auto after = parse_json(o.out);
    ASSERT_TRUE(after.ok()) << o.out;
    const auto* g1 = &after->get("guests")->array.at(1);
    ASSERT_NE(g1->get("bytes_from_guest"), nullptr) << o.out;
    EXPECT_GE(g1->get("bytes_from_guest")->number, 4) << o.out;
    EXPECT_GE(g1->get("bytes_to_guest")->number, 4) << o.out;
  }

  o = tosec({"down", "-c", cfg});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(tosec({"status", "-c", cfg}).code, 3);
  EXPECT_TRUE(
      wait_until([&] { return processes_mentioning(root_).empty(); }, std::chrono::seconds(20)));
}

}  // namespace
