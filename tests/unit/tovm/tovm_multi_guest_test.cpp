// One TOE process serving several guests on several worker threads (tovm_process.h): guest i on
// worker i % W, every guest's data intact and counted in its own session only, a broken guest
// closing its own lane only; the executable with two guest groups on two workers, pinned to
// CPUs with --cpus.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <thread>

#include "fake_guest.h"
#include "ivshmem_test_support.h"
#include "kernel_peer.h"
#include "toe_harness.h"
#include "tosec/rpc/cpu_list.h"
#include "tosec/tovm/tovm_process.h"

namespace tosec::tovm::test {
namespace {

using tosec::test::ChildProcess;
using tosec::test::TempDir;

// N guests, each with its own region (ivshmem server thread), served by one TovmProcess.
class MultiToe {
 public:
  MultiToe(unsigned guests, unsigned workers, std::int64_t spin_ns = 0) {
    const auto cfg = small_config();
    TovmCommandLine cl;
    cl.workers = workers;
    for (unsigned i = 0; i < guests; ++i) {
      const std::string n = std::to_string(i);
      servers_.push_back(std::make_unique<tosec::test::ServerThread>(
          host::IvshmemServerConfig{dir_.file("ivs" + n), 1},
          rpc::guest_region_layout(cfg).pow2_size()));
      if (!servers_.back()->ok()) {
        error_ = "ivshmem server: " + servers_.back()->error();
        return;
      }
      TovmOptions o;
      o.guest = "g" + n;
      o.ivshmem = dir_.file("ivs" + n);
      o.sidecar = dir_.file("side" + n);
      o.status = dir_.file("status" + n);
      o.channel = cfg;
      o.log_level = LogLevel::kError;
      o.spin_ns = spin_ns;
      cl.guests.push_back(o);
    }
    opts_ = cl.guests;
    auto p = TovmProcess::create(cl);
    if (!p) {
      error_ = p.error().message;
      return;
    }
    process_ = std::move(*p);
    thread_ = std::thread([this] { (void)process_->run(); });
  }
  ~MultiToe() {
    if (process_) process_->request_stop();
    if (thread_.joinable()) thread_.join();
    process_.reset();
  }
  bool ok() const { return process_ != nullptr; }
  const std::string& error() const { return error_; }
  const TovmOptions& guest(unsigned i) const { return opts_.at(i); }
  unsigned workers() const { return process_->worker_count(); }
  std::string status(unsigned i) const { return read_status(opts_.at(i).status); }

  static std::string read_status(const std::string& path) {
    rpc::UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) return {};
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::recv(s.get(), buf, sizeof buf, 0)) > 0;) {
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  TempDir dir_;
  std::vector<std::unique_ptr<tosec::test::ServerThread>> servers_;
  std::vector<TovmOptions> opts_;
  std::unique_ptr<TovmProcess> process_;
  std::thread thread_;
  std::string error_;
};

std::uint64_t fnv(std::span<const std::byte> d) {
  std::uint64_t h = 1469598103934665603ULL;
  for (auto b : d) h = (h ^ static_cast<std::uint8_t>(b)) * 1099511628211ULL;
  return h;
}

// One guest's round: connect to a kernel echo server through the TOE, send `bytes` random
// bytes, read them back. Returns "" or what went wrong.
std::string echo_round(const TovmOptions& o, std::size_t bytes, unsigned seed) {
  std::string err;
  auto g = FakeGuest::join(o.ivshmem, o.sidecar, err);
  if (!g) return o.guest + ": join: " + err;
  KernelListener srv;
  if (srv.port == 0) return o.guest + ": listener";
  const sockaddr_in a = loopback(srv.port);
  std::thread echo([&] {
    rpc::UniqueFd c = srv.accept_one();
    if (c.valid()) echo_bytes(c.get(), bytes);
  });
  rpc::UniqueFd afd;
  const std::int64_t id = g->socket(AF_INET, SOCK_STREAM, afd);
  std::string result;
  if (id < 0) {
    result = o.guest + ": socket " + std::to_string(id);
  } else {
    const auto sid = static_cast<std::uint32_t>(id);
    const std::int64_t r = g->addr_op(rpc::Op::kConnect, sid, &a, sizeof a);
    if ((r != 0 && r != -EINPROGRESS) || !wait_for([&] {
          return g->slot(sid)->state.load(std::memory_order_acquire) ==
                 rpc::SocketState::kConnected;
        })) {
      result = o.guest + ": connect " + std::to_string(r);
    } else {
      std::mt19937 rng(seed);
      std::vector<std::byte> data(bytes);
      for (auto& b : data) b = static_cast<std::byte>(rng() & 0xFF);
      const std::size_t chunk = g->channel().config().chunk_size;
      std::vector<std::byte> back;
      // Send everything first, then read (FakeGuest is single-threaded; the echo's bytes wait
      // in the TOE's rx ring and the kernel buffers meanwhile).
      for (std::size_t off = 0; off < data.size(); off += chunk) {
        if (!g->send_async(sid, std::span(data).subspan(off, std::min(chunk, bytes - off)))) {
          break;
        }
      }
      wait_for([&] {
        for (const auto& e : g->take_rx(sid)) {
          auto c = g->channel().rx_pool().chunk(e.chunk);
          back.insert(back.end(), c.begin(), c.begin() + e.length);
          g->return_rx(sid, e.chunk);
        }
        return back.size() >= bytes;
      });
      if (back.size() != bytes || fnv(back) != fnv(data)) {
        result = o.guest + ": got " + std::to_string(back.size()) + " bytes back, checksum " +
                 (fnv(back) == fnv(data) ? "ok" : "wrong");
      }
    }
  }
  echo.join();
  return result;
}

class TovmMultiGuest : public ::testing::TestWithParam<unsigned> {};

TEST_P(TovmMultiGuest, EveryGuestOnItsWorkerWithItsOwnDataAndCounters) {
  constexpr unsigned kGuests = 3;
  constexpr std::size_t kBytes = 256 * 1024;
  MultiToe toe(kGuests, GetParam());
  ASSERT_TRUE(toe.ok()) << toe.error();
  EXPECT_EQ(toe.workers(), std::min(GetParam(), kGuests));
  // All guests at once: with W > 1 their sessions run on different threads concurrently.
  std::vector<std::string> results(kGuests);
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < kGuests; ++i) {
    ts.emplace_back([&, i] { results[i] = echo_round(toe.guest(i), kBytes * (i + 1), 11 + i); });
  }
  for (auto& t : ts) t.join();
  for (unsigned i = 0; i < kGuests; ++i) {
    EXPECT_EQ(results[i], "") << "guest " << i;
    const std::string st = toe.status(i);
    EXPECT_EQ(st.find("\"guest\":\"g" + std::to_string(i) + "\""), 1U) << st;
    EXPECT_EQ(ToeHarness::stat_in(st, "worker"), worker_of(i, toe.workers())) << st;
    // Each session counts only its own guest's bytes.
    EXPECT_EQ(ToeHarness::stat_in(st, "bytes_from_guest"),
              static_cast<std::int64_t>(kBytes * (i + 1)))
        << st;
    EXPECT_EQ(ToeHarness::stat_in(st, "bytes_to_guest"),
              static_cast<std::int64_t>(kBytes * (i + 1)))
        << st;
    EXPECT_EQ(ToeHarness::stat_in(st, "bad_descriptors"), 0) << st;
  }
}

INSTANTIATE_TEST_SUITE_P(Workers, TovmMultiGuest, ::testing::Values(1U, 2U, 4U),
                         [](const auto& p) { return std::to_string(p.param) + "workers"; });

TEST(TovmMultiGuestIsolation, ABrokenGuestClosesOnlyItsOwnLane) {
  MultiToe toe(2, 2);
  ASSERT_TRUE(toe.ok()) << toe.error();
  std::string err;
  auto bad = FakeGuest::join(toe.guest(0).ivshmem, toe.guest(0).sidecar, err);
  ASSERT_TRUE(bad) << err;
  // A descriptor naming a socket this guest never opened: -EINVAL, counted in g0 only.
  EXPECT_EQ(bad->simple(rpc::Op::kShutdown, 3, SHUT_WR), -EINVAL);
  EXPECT_TRUE(wait_for([&] { return ToeHarness::stat_in(toe.status(0), "bad_descriptors") == 1; }))
      << toe.status(0);
  EXPECT_EQ(echo_round(toe.guest(1), 64 * 1024, 5), "");
  EXPECT_EQ(ToeHarness::stat_in(toe.status(1), "bad_descriptors"), 0) << toe.status(1);
  // g0 still works after its bad request.
  EXPECT_EQ(echo_round(toe.guest(0), 64 * 1024, 6), "");
}

TEST(TovmSpin, PolicyForTheSpinFlag) {
  const rpc::SpinPolicy off = toe_spin_policy(0);
  EXPECT_FALSE(off.adaptive);
  EXPECT_EQ(off.spin_ns, 0);
  const rpc::SpinPolicy on = toe_spin_policy(50'000);
  EXPECT_TRUE(on.adaptive);
  EXPECT_EQ(on.spin_ns, 50'000);  // a new worker spins at once
  EXPECT_EQ(on.max_spin_ns, 50'000);
  EXPECT_EQ(on.probe_ns, 50'000);
  EXPECT_EQ(on.probe_every, 16U);
  EXPECT_TRUE(on.hit_rate);
}

// A busy-polling worker serves the same traffic as a sleeping one (the spin only changes when
// the worker notices work): the echo through a spinning TOE arrives intact.
TEST(TovmSpin, ASpinningWorkerServesEveryGuest) {
  MultiToe toe(2, 1, 50'000);
  ASSERT_TRUE(toe.ok()) << toe.error();
  EXPECT_EQ(echo_round(toe.guest(0), 128 * 1024, 21), "");
  EXPECT_EQ(echo_round(toe.guest(1), 128 * 1024, 22), "");
}

TEST(TovmOptions, GuestGroupsAndTheirErrors) {
  {
    const char* argv[] = {"tovm", "--workers", "2",     "--lanes",   "3",  "--guest",
                          "a",    "--ivshmem", "ia",    "--sidecar", "sa", "--rx-chunks",
                          "9",    "--guest",   "b",     "--ivshmem", "ib", "--sidecar",
                          "sb",   "--status",  "tb",    "--lanes",   "5",  "--spin-ns",
                          "7",    "--cpus",    "3,0-1", nullptr};
    auto cl = parse_tovm_command_line(27, const_cast<char* const*>(argv));
    ASSERT_TRUE(cl) << cl.error().message;
    ASSERT_EQ(cl->guests.size(), 2U);
    EXPECT_EQ(cl->workers, 2U);
    EXPECT_EQ(cl->cpus, (std::vector<unsigned>{0, 1, 3}));  // process-wide, sorted
    const auto& a = cl->guests[0];
    const auto& b = cl->guests[1];
    EXPECT_EQ(a.guest, "a");
    EXPECT_EQ(a.ivshmem, "ia");
    EXPECT_EQ(a.channel.lanes, 3U);      // the default given before the first --guest
    EXPECT_EQ(a.channel.rx_chunks, 9U);  // its own
    EXPECT_EQ(a.status, "");
    EXPECT_EQ(b.guest, "b");
    EXPECT_EQ(b.sidecar, "sb");
    EXPECT_EQ(b.status, "tb");
    EXPECT_EQ(b.channel.lanes, 5U);
    EXPECT_EQ(b.channel.rx_chunks, rpc::GuestChannelConfig{}.rx_chunks);
    EXPECT_EQ(a.spin_ns, 7);  // process-wide wherever it stands
    EXPECT_EQ(b.spin_ns, 7);
    // Two guests are not one: the single-guest parser refuses them.
    auto one = parse_tovm_options(27, const_cast<char* const*>(argv));
    ASSERT_FALSE(one);
    EXPECT_NE(one.error().message.find("expected one --guest"), std::string::npos);
  }
  auto error_of = [](std::initializer_list<std::string> args) {
    std::vector<std::string> words = {"tovm"};
    words.insert(words.end(), args);
    std::vector<char*> v;
    for (auto& w : words) v.push_back(w.data());
    v.push_back(nullptr);
    auto cl = parse_tovm_command_line(static_cast<int>(words.size()), v.data());
    return cl ? std::string() : cl.error().message;
  };
  EXPECT_EQ(error_of({"--sidecar", "s", "--guest", "a", "--ivshmem", "i"}),
            "--sidecar must follow the --guest it belongs to");
  EXPECT_EQ(error_of({"--guest", "a", "--ivshmem", "i", "--sidecar", "s", "--guest", "a"}),
            "--guest a given twice");
  EXPECT_EQ(error_of({"--guest", "a", "--ivshmem", "i", "--sidecar", "s", "--guest", "b",
                      "--ivshmem", "j"}),
            "--guest b: --sidecar is required");
  EXPECT_EQ(error_of({"--guest", "a", "--ivshmem", "i", "--sidecar", "s", "--guest", "b",
                      "--ivshmem", "j", "--sidecar", "s"}),
            "--guest b: path s is used twice");
  EXPECT_NE(error_of({"--guest", "a", "--ivshmem", "i", "--sidecar", "s", "--workers", "65"})
                .find("--workers"),
            std::string::npos);
  EXPECT_EQ(error_of({"--guest", "a", "--ivshmem", "i", "--sidecar", "s", "--cpus", "2-1"}),
            "--cpus: range '2-1' in CPU list '2-1' ends below its start");
  EXPECT_EQ(error_of({"--guest", "a", "--ivshmem", "i", "--sidecar", "s", "--cpus", ""}),
            "--cpus: empty CPU list");
}

// tosec-tovm with guests "a" and "b" on two workers; their regions' servers must be running at
// dir/ia and dir/ib (sidecars dir/sa, dir/sb; status sockets dir/ta, dir/tb).
std::vector<std::string> two_guest_argv(const TempDir& dir, const rpc::GuestChannelConfig& cfg,
                                        std::initializer_list<std::string> extra) {
  std::vector<std::string> argv = {TOSEC_TOVM_BIN, "--workers", "2", "--log-level", "error"};
  argv.insert(argv.end(), extra);
  for (const char* flag : {"--lanes", "--ring-slots", "--max-sockets", "--socket-rx-entries",
                           "--chunk-size", "--tx-chunks-per-lane", "--rx-chunks"}) {
    const std::string f = flag;
    const std::uint32_t v = f == "--lanes"                ? cfg.lanes
                            : f == "--ring-slots"         ? cfg.ring_slots
                            : f == "--max-sockets"        ? cfg.max_sockets
                            : f == "--socket-rx-entries"  ? cfg.socket_rx_entries
                            : f == "--chunk-size"         ? cfg.chunk_size
                            : f == "--tx-chunks-per-lane" ? cfg.tx_chunks_per_lane
                                                          : cfg.rx_chunks;
    argv.push_back(f);
    argv.push_back(std::to_string(v));
  }
  for (const char* g : {"a", "b"}) {
    const std::string n = g;
    for (const std::string& a : {std::string("--guest"), n, std::string("--ivshmem"),
                                 dir.file("i" + n), std::string("--sidecar"), dir.file("s" + n),
                                 std::string("--status"), dir.file("t" + n)}) {
      argv.push_back(a);
    }
  }
  return argv;
}

// The executable serving guests "a" and "b" on two workers (two_guest_argv plus `extra`), with
// their regions' servers; ready() waits for its ready line.
class TwoGuestToe {
 public:
  explicit TwoGuestToe(std::initializer_list<std::string> extra)
      : size_(rpc::guest_region_layout(cfg_).pow2_size()),
        ivs_a_(host::IvshmemServerConfig{dir_.file("ia"), 1}, size_),
        ivs_b_(host::IvshmemServerConfig{dir_.file("ib"), 1}, size_),
        p_(ChildProcess::spawn(two_guest_argv(dir_, cfg_, extra), dir_.file("out"),
                               dir_.file("err"))) {}
  bool ready() const {
    return ivs_a_.ok() && ivs_b_.ok() && p_.started() &&
           tosec::test::wait_until(
               [&] { return tosec::test::slurp(dir_.file("out")) == "tosec-tovm: ready\n"; },
               kWaitMs);
  }
  std::string err() const { return tosec::test::slurp(dir_.file("err")); }
  std::string out() const { return tosec::test::slurp(dir_.file("out")); }
  std::optional<int> wait_exit() { return p_.wait(kWaitMs); }
  pid_t pid() const { return p_.pid(); }
  const TempDir& dir() const { return dir_; }
  // An echo through guest b (worker 1), then SIGTERM: "" if it echoed and exited 0.
  std::string echo_b_then_stop(std::size_t bytes, unsigned seed) {
    TovmOptions b;
    b.guest = "b";
    b.ivshmem = dir_.file("ib");
    b.sidecar = dir_.file("sb");
    std::string failed = echo_round(b, bytes, seed);
    p_.signal(SIGTERM);
    auto status = p_.wait(kWaitMs);
    if (!status) return failed + " tosec-tovm did not exit";
    if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      return failed + " tosec-tovm exit status " + std::to_string(*status);
    }
    return failed;
  }

 private:
  TempDir dir_;
  rpc::GuestChannelConfig cfg_ = small_config();
  std::size_t size_;
  tosec::test::ServerThread ivs_a_;
  tosec::test::ServerThread ivs_b_;
  ChildProcess p_;
};

TEST(TovmBinary, TwoGuestGroupsOnTwoWorkers) {
  TwoGuestToe toe({});
  ASSERT_TRUE(toe.ready()) << toe.err();
  const std::string sa = MultiToe::read_status(toe.dir().file("ta"));
  const std::string sb = MultiToe::read_status(toe.dir().file("tb"));
  EXPECT_EQ(sa.rfind("{\"guest\":\"a\",\"pid\":" + std::to_string(toe.pid()) + ",\"worker\":0", 0),
            0U)
      << sa;
  EXPECT_EQ(sb.rfind("{\"guest\":\"b\",\"pid\":" + std::to_string(toe.pid()) + ",\"worker\":1", 0),
            0U)
      << sb;
  EXPECT_EQ(toe.echo_b_then_stop(128 * 1024, 3), "");
  for (const char* f : {"sa", "sb", "ta", "tb"}) {
    EXPECT_FALSE(tosec::test::path_exists(toe.dir().file(f))) << f;
  }
}

// The CPU a thread of process `pid` may run on, from /proc ("" if unreadable).
std::string cpus_allowed(pid_t pid, const std::string& tid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + tid + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Cpus_allowed_list:", 0) == 0) {
      const auto v = line.find_first_not_of(" \t", line.find(':') + 1);
      return v == std::string::npos ? std::string() : line.substr(v);
    }
  }
  return {};
}

// --cpus: worker 0 (the main thread) runs on the first CPU of the list, worker 1 on the second,
// and the guest on worker 1 is served; a CPU the process may not use is refused by number.
TEST(TovmBinary, CpusPinsWorkersRoundRobinAndRefusesAMissingCpu) {
  cpu_set_t mine;
  ASSERT_EQ(::sched_getaffinity(0, sizeof mine, &mine), 0);
  const std::vector<unsigned> usable = rpc::cpus_in(mine);
  ASSERT_FALSE(usable.empty());
  const unsigned c0 = usable.front();
  const unsigned c1 = usable.size() > 1 ? usable[1] : c0;  // the same CPU on a one-CPU machine
  {
    TwoGuestToe toe({"--cpus", std::to_string(c0) + "," + std::to_string(c1)});
    ASSERT_TRUE(toe.ready()) << toe.err();
    const std::string main_tid = std::to_string(toe.pid());
    EXPECT_EQ(cpus_allowed(toe.pid(), main_tid), std::to_string(c0));
    bool worker1_pinned = false;
    for (const auto& e : std::filesystem::directory_iterator("/proc/" + main_tid + "/task")) {
      const std::string tid = e.path().filename().string();
      if (tid != main_tid && cpus_allowed(toe.pid(), tid) == std::to_string(c1)) {
        worker1_pinned = true;
      }
    }
    EXPECT_TRUE(worker1_pinned) << "no thread of tosec-tovm runs on CPU " << c1 << " alone";
    // Each guest's status names the CPUs of the worker that serves it.
    const std::string sb = MultiToe::read_status(toe.dir().file("tb"));
    EXPECT_NE(sb.find(",\"worker\":1,\"cpus\":\"" + std::to_string(c1) + "\","), std::string::npos)
        << sb;
    const std::string sa = MultiToe::read_status(toe.dir().file("ta"));
    EXPECT_NE(sa.find(",\"worker\":0,\"cpus\":\"" + std::to_string(c0) + "\","), std::string::npos)
        << sa;
    EXPECT_EQ(toe.echo_b_then_stop(64 * 1024, 5), "");
  }
  // CPU 1023 fits a cpu_set_t but no machine that runs this test has it.
  TwoGuestToe bad({"--cpus", "1023"});
  const auto st = bad.wait_exit();
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 1) << *st;
  EXPECT_NE(bad.err().find("--cpus: cannot run on CPU 1023"), std::string::npos) << bad.err();
  EXPECT_EQ(bad.out(), "");
}

}  // namespace
}  // namespace tosec::tovm::test
