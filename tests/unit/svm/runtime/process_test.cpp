// tosec-svm as its own process, attached to a region served by the real tosec-ivshmem-server;
// this test process is the TOE (InspectionPlane on node 0).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "harness.h"
#include "tosec/rpc/ivshmem_client.h"

namespace tosec::svm::test {
namespace {

struct Child {
  pid_t pid = -1;
  int out = -1;  // its stdout
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (out >= 0) ::close(out);
  }
  int wait_exit() {
    int st = 0;
    ::waitpid(pid, &st, 0);
    pid = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
};

// fork/exec with stdout on a pipe and stderr into `err_path`.
void spawn(Child& c, std::vector<std::string> argv, const std::string& err_path) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  c.pid = ::fork();
  ASSERT_GE(c.pid, 0);
  if (c.pid == 0) {
    ::dup2(p[1], 1);
    const int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (e >= 0) ::dup2(e, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(p[1]);
  c.out = p[0];
}

// Reads the child's stdout until a line equals `want` (20 s bound).
bool wait_line(const Child& c, const std::string& want) {
  std::string buf;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < until) {
    pollfd pfd{c.out, POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    char tmp[256];
    const ssize_t n = ::read(c.out, tmp, sizeof tmp);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<std::size_t>(n));
    if (buf.find(want + "\n") != std::string::npos) return true;
  }
  return false;
}

std::string slurp(const std::string& path) {
  std::string out;
  for (const auto& l : read_lines(path)) out += l + "\n";
  return out;
}

class SvmProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tosec-svmproc.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    shm_ = "tosec-svmproc-" + std::to_string(::getpid());
  }
  void TearDown() override {
    svm_.reset();
    server_.reset();
    ::shm_unlink(("/" + shm_).c_str());
    std::filesystem::remove_all(dir_);
  }
  // tosec-ivshmem-server on `sock`, waited for up to 20 s (a loaded machine); a fatal failure
  // naming its stderr if the socket does not appear.
  void start_server(const std::string& sock) {
    spawn(*server_, {TOSEC_IVSHMEM_SERVER_BIN, "-F", "-S", sock, "-M", shm_, "-l", "4M", "-n", "1"},
          dir_ + "/server.err");
    for (int i = 0; i < 2000 && !std::filesystem::exists(sock); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(std::filesystem::exists(sock)) << slurp(dir_ + "/server.err");
  }
  std::string dir_;
  std::string shm_;
  std::unique_ptr<Child> server_ = std::make_unique<Child>();
  std::unique_ptr<Child> svm_ = std::make_unique<Child>();
};

TEST_F(SvmProcess, BadRulesExitWithAClearMessage) {
  const std::string rules = dir_ + "/bad.rules";
  std::ofstream(rules) << "block 1 OK\nexplode 2 X\n";
  spawn(*svm_,
        {TOSEC_SVM_BIN, "--engine", "literal", "--rules", rules, "--name", "s1", "--node", "1",
         "--ivshmem", dir_ + "/none.sock"},
        dir_ + "/svm.err");
  EXPECT_NE(svm_->wait_exit(), 0);
  const std::string err = slurp(dir_ + "/svm.err");
  EXPECT_NE(err.find(rules + ":2"), std::string::npos) << err;
  EXPECT_NE(err.find("explode"), std::string::npos) << err;
}

TEST_F(SvmProcess, InspectsThroughTheIvshmemServerAndFailsClosedWhenItStops) {
  const std::string sock = dir_ + "/ivshmem.sock";
  start_server(sock);
  if (HasFatalFailure()) return;

  rpc::IvshmemClient toe({.vectors = 1});
  ASSERT_TRUE(toe.connect(sock).ok());
  InspectionPlaneOptions o;
  o.region.nodes = 3;
  o.region.ring_slots = 256;
  o.region.chunk_size = 4096;
  o.region.chunks = 128;
  o.region.control_bytes = 65536;
  o.svms = {{"s1", 1, "literal"}};
  o.default_deadline_us = 30'000'000;
  ASSERT_LE(rpc::inspection_region_layout(o.region).required_size(), toe.region().bytes().size());
  auto plane = InspectionPlane::create(toe.region().bytes(), o, toe.doorbells(), toe.doorbells(),
                                       toe.self_id(), 0);
  ASSERT_TRUE(plane.ok()) << plane.error().message;
  InspectionPlane& p = **plane;
  toe.on_peer_left([&](rpc::PeerId peer) { p.node_departed(peer); });
  ASSERT_TRUE(p.update_chains(chains({{1, {{"s1"}}, false}})).ok());

  const std::string rules = dir_ + "/s1.rules";
  std::ofstream(rules) << "# test rules\nblock 1001 EVIL\nalert 1002 curl\n";
  const std::string alerts = dir_ + "/alerts.json";
  spawn(*svm_,
        {TOSEC_SVM_BIN, "--engine", "literal", "--rules", rules, "--name", "s1", "--node", "1",
         "--ivshmem", sock, "--workers", "2", "--alert-log", alerts},
        dir_ + "/svm.err");
  ASSERT_TRUE(wait_line(*svm_, "tosec-svm: ready")) << slurp(dir_ + "/svm.err");

  std::map<std::uint64_t, std::string> delivered;
  std::vector<BlockInfo> blocks;
  PlaneCallbacks cb{[&](std::uint64_t s, Direction, std::span<const std::byte> b) {
                      delivered[s].append(reinterpret_cast<const char*>(b.data()), b.size());
                    },
                    [&](const BlockInfo& b) { blocks.push_back(b); }};
  auto pump = [&](auto pred) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!pred() && std::chrono::steady_clock::now() < until) {
      (void)toe.process_events();
      p.poll(cb);
      (void)p.wait(2'000'000);
    }
    return pred();
  };
  ASSERT_TRUE(p.open_stream(stream_info(1), 1).ok());
  ASSERT_TRUE(p.open_stream(stream_info(2), 1).ok());
  ASSERT_TRUE(
      p.submit(1, Direction::kOutbound, as_bytes("GET / HTTP/1.1\r\nUser-Agent: curl")).ok());
  ASSERT_TRUE(p.submit(1, Direction::kInbound, as_bytes("HTTP/1.1 200 OK")).ok());
  ASSERT_TRUE(p.submit(2, Direction::kOutbound, as_bytes("an EVIL request")).ok());
  ASSERT_TRUE(pump([&] { return delivered[1].size() == 47 && blocks.size() == 1; }))
      << p.last_error() << slurp(dir_ + "/svm.err");
  EXPECT_EQ(blocks[0].stream_id, 2U);
  EXPECT_EQ(blocks[0].rule_id, "1001");
  const auto lines = read_lines(alerts);
  ASSERT_EQ(lines.size(), 2U);
  for (const auto& l : lines) {
    auto j = parse_json(l);
    EXPECT_EQ(j.fields().at("svm").string_value(), "s1");
  }

  // SIGTERM: clean exit; the plane then fails the chain closed.
  ::kill(svm_->pid, SIGTERM);
  EXPECT_EQ(svm_->wait_exit(), 0) << slurp(dir_ + "/svm.err");
  ASSERT_TRUE(pump([&] { return !p.node_up(1); }));
  EXPECT_TRUE(pump([&] { return blocks.size() == 2; }));
  EXPECT_NE(blocks[1].reason.find("svm s1 down"), std::string::npos) << blocks[1].reason;
  EXPECT_EQ(p.submit(1, Direction::kOutbound, as_bytes("x")).error().code, ECONNRESET);
  EXPECT_EQ(p.open_stream(stream_info(3), 1).code(), EHOSTUNREACH);
}

TEST_F(SvmProcess, TwoSvmProcessesHandOffDirectlyAndAKillIsADeparture) {
  const std::string sock = dir_ + "/ivshmem.sock";
  start_server(sock);
  if (HasFatalFailure()) return;
  rpc::IvshmemClient toe({.vectors = 1});
  ASSERT_TRUE(toe.connect(sock).ok());
  InspectionPlaneOptions o;
  o.region.nodes = 3;
  o.region.ring_slots = 256;
  o.region.chunk_size = 4096;
  o.region.chunks = 128;
  o.region.control_bytes = 65536;
  o.svms = {{"s1", 1, "literal"}, {"s2", 2, "literal"}};
  o.default_deadline_us = 30'000'000;
  auto plane = InspectionPlane::create(toe.region().bytes(), o, toe.doorbells(), toe.doorbells(),
                                       toe.self_id(), 0);
  ASSERT_TRUE(plane.ok()) << plane.error().message;
  InspectionPlane& p = **plane;
  toe.on_peer_left([&](rpc::PeerId peer) { p.node_departed(peer); });
  ASSERT_TRUE(p.update_chains(chains({{1, {{"s1"}, {"s2"}}, false}})).ok());

  Child svm2;
  for (int n = 1; n <= 2; ++n) {
    const std::string rules = dir_ + "/s" + std::to_string(n) + ".rules";
    std::ofstream(rules) << "block " << n << "001 EVIL" << n << "\n";
    Child& c = n == 1 ? *svm_ : svm2;
    spawn(c,
          {TOSEC_SVM_BIN, "--engine", "literal", "--rules", rules, "--name",
           "s" + std::to_string(n), "--node", std::to_string(n), "--ivshmem", sock},
          dir_ + "/svm" + std::to_string(n) + ".err");
    ASSERT_TRUE(wait_line(c, "tosec-svm: ready"))
        << slurp(dir_ + "/svm" + std::to_string(n) + ".err");
  }
  std::map<std::uint64_t, std::string> delivered;
  std::vector<BlockInfo> blocks;
  PlaneCallbacks cb{[&](std::uint64_t s, Direction, std::span<const std::byte> b) {
                      delivered[s].append(reinterpret_cast<const char*>(b.data()), b.size());
                    },
                    [&](const BlockInfo& b) { blocks.push_back(b); }};
  auto pump = [&](auto pred) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!pred() && std::chrono::steady_clock::now() < until) {
      (void)toe.process_events();
      p.poll(cb);
      (void)p.wait(2'000'000);
    }
    return pred();
  };
  for (std::uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(p.open_stream(stream_info(id), 1).ok());
  ASSERT_TRUE(p.submit(1, Direction::kOutbound, as_bytes("clean")).ok());
  ASSERT_TRUE(p.submit(1, Direction::kInbound, as_bytes("reply")).ok());
  ASSERT_TRUE(p.submit(2, Direction::kOutbound, as_bytes("EVIL2")).ok());  // passes s1, s2 blocks
  ASSERT_TRUE(pump([&] { return delivered[1].size() == 10 && blocks.size() == 1; }))
      << p.last_error() << "; delivered '" << delivered[1] << "', " << blocks.size()
      << " blocks, in flight " << p.stats().inflight << "\n"
      << slurp(dir_ + "/svm1.err") << slurp(dir_ + "/svm2.err");
  EXPECT_EQ(blocks[0].svm, "s2");
  // Directions are ordered each on its own, not with each other.
  EXPECT_TRUE(delivered[1] == "cleanreply" || delivered[1] == "replyclean") << delivered[1];
  // SIGKILL: no retire; the ivshmem server announces the departure.
  ::kill(svm2.pid, SIGKILL);
  EXPECT_EQ(svm2.wait_exit(), 128 + SIGKILL);
  ASSERT_TRUE(pump([&] { return blocks.size() == 3; })) << p.last_error();
  EXPECT_NE(blocks[1].reason.find("svm s2 down"), std::string::npos) << blocks[1].reason;
  EXPECT_TRUE(p.node_up(1));
  EXPECT_FALSE(p.node_up(2));
}

}  // namespace
}  // namespace tosec::svm::test
