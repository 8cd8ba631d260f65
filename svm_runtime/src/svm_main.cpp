// tosec-svm: one security VM instance (process mode). Attaches the TOVM's inspection region as
// node I through the ivshmem server, loads one engine, and inspects until SIGTERM/SIGINT.
//
//   tosec-svm --engine KIND --rules PATH --name NAME --node I --ivshmem SOCKET
//             [--workers N] [--mode prevent|detect] [--alert-log FILE] [--status SOCKET]
//             [--option k=v ...]
//
// Prints "tosec-svm: ready" on stdout once attached with rules loaded (the CLI waits for it).
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "tosec/rpc/inspection_channel.h"
#include "tosec/rpc/ivshmem_client.h"
#include "tosec/svm/engine_registry.h"
#include "tosec/svm/runtime.h"

using namespace tosec;

namespace {

struct Options {
  std::string engine;
  std::string rules;
  std::string name;
  long node = -1;
  std::string ivshmem;
  unsigned workers = 0;  // inline: the manager thread inspects (runtime.h)
  svm::InspectMode mode = svm::InspectMode::kPrevent;
  std::string alert_log;
  std::string status;
  std::map<std::string, std::string> options;
};

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: tosec-svm --engine KIND --rules PATH --name NAME --node I --ivshmem SOCKET\n"
               "                 [--workers N] [--mode prevent|detect] [--alert-log FILE]\n"
               "                 [--status SOCKET] [--option k=v ...]\n");
  std::exit(code);
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "tosec-svm: %s\n", msg.c_str());
  return 1;
}

// Attaches the region once the TOE has formatted it (it may still be doing so).
rpc::Result<rpc::RegionView> attach_when_ready(const rpc::ShmMapping& map, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto v = rpc::RegionView::attach(map.bytes());
    if (v) {
      auto ch = rpc::InspectionChannel::attach_svm(*v);
      if (ch) return v;
      if (std::chrono::steady_clock::now() > deadline) return ch.error();
    } else if ((v.error().code != EAGAIN && v.error().code != EPROTO) ||
               std::chrono::steady_clock::now() > deadline) {
      return v;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// --status: a Unix stream socket; every connection gets the current SvmStats (protobuf text).
rpc::Result<rpc::UniqueFd> listen_status(const std::string& path) {
  rpc::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return rpc::errno_error("socket(" + path + ")");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return rpc::Error{ENAMETOOLONG, "status socket " + path};
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return rpc::errno_error("bind(" + path + ")");
  }
  if (::listen(fd.get(), 8) != 0) return rpc::errno_error("listen(" + path + ")");
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  static const option longopts[] = {
      {"engine", required_argument, nullptr, 'e'},  {"rules", required_argument, nullptr, 'r'},
      {"name", required_argument, nullptr, 'N'},    {"node", required_argument, nullptr, 'n'},
      {"ivshmem", required_argument, nullptr, 'i'}, {"workers", required_argument, nullptr, 'w'},
      {"mode", required_argument, nullptr, 'm'},    {"alert-log", required_argument, nullptr, 'a'},
      {"status", required_argument, nullptr, 's'},  {"option", required_argument, nullptr, 'o'},
      {"help", no_argument, nullptr, 'h'},          {nullptr, 0, nullptr, 0}};
  for (int c; (c = ::getopt_long(argc, argv, "h", longopts, nullptr)) != -1;) {
    switch (c) {
      case 'e':
        o.engine = optarg;
        break;
      case 'r':
        o.rules = optarg;
        break;
      case 'N':
        o.name = optarg;
        break;
      case 'n': {
        char* end = nullptr;
        o.node = std::strtol(optarg, &end, 10);
        if (end == optarg || *end != '\0' || o.node < 1 ||
            o.node >= static_cast<long>(rpc::kMaxInspectionNodes)) {
          return fail(std::string("--node '") + optarg + "' is not in [1, 15]");
        }
        break;
      }
      case 'i':
        o.ivshmem = optarg;
        break;
      case 'w': {
        char* end = nullptr;
        const long w = std::strtol(optarg, &end, 10);
        if (end == optarg || *end != '\0' || w < 0 || w > 64) {
          return fail(std::string("--workers '") + optarg + "' is not in [0, 64]");
        }
        o.workers = static_cast<unsigned>(w);
        break;
      }
      case 'm':
        if (std::strcmp(optarg, "prevent") == 0) {
          o.mode = svm::InspectMode::kPrevent;
        } else if (std::strcmp(optarg, "detect") == 0) {
          o.mode = svm::InspectMode::kDetect;
        } else {
          return fail(std::string("--mode '") + optarg + "': expected prevent or detect");
        }
        break;
      case 'a':
        o.alert_log = optarg;
        break;
      case 's':
        o.status = optarg;
        break;
      case 'o': {
        const char* eq = std::strchr(optarg, '=');
        if (eq == nullptr || eq == optarg) {
          return fail(std::string("--option '") + optarg + "': expected key=value");
        }
        o.options[std::string(optarg, static_cast<std::size_t>(eq - optarg))] = eq + 1;
        break;
      }
      case 'h':
        usage(0);
      default:
        usage(2);
    }
  }
  if (o.engine.empty() || o.rules.empty() || o.name.empty() || o.node < 0 || o.ivshmem.empty()) {
    std::fprintf(stderr,
                 "tosec-svm: --engine, --rules, --name, --node and --ivshmem are required\n");
    usage(2);
  }

  // Signals are taken synchronously by the main loop (sigtimedwait), so block them everywhere
  // before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  const auto registry = svm::EngineRegistry::builtin();
  svm::EngineConfig ecfg{o.name, o.rules, o.options};
  auto engine = registry.create(o.engine, ecfg);
  if (!engine) return fail("engine '" + o.engine + "': " + engine.error().message);

  std::unique_ptr<svm::AlertLog> alerts;
  if (!o.alert_log.empty()) {
    auto log = svm::AlertLog::open(o.alert_log);
    if (!log) return fail(log.error().message);
    alerts = std::move(*log);
  }

  rpc::IvshmemClient client({.vectors = 1});
  if (auto s = client.connect(o.ivshmem); !s)
    return fail("ivshmem " + o.ivshmem + ": " + s.message());
  auto view = attach_when_ready(client.region(), 10'000);
  if (!view) return fail("inspection region: " + view.error().message);
  auto ch = rpc::InspectionChannel::attach_svm(*view);
  if (!ch) return fail("inspection region: " + ch.error().message);
  if (static_cast<std::uint32_t>(o.node) >= ch->nodes()) {
    return fail("--node " + std::to_string(o.node) + " but the region has nodes 1.." +
                std::to_string(ch->nodes() - 1));
  }
  (void)view->claim_peer(client.self_id(), rpc::PeerRole::kSvm, o.name,
                         static_cast<std::uint32_t>(::getpid()));

  svm::SvmRuntimeOptions ropt;
  ropt.node = static_cast<std::uint16_t>(o.node);
  ropt.name = o.name;
  ropt.workers = o.workers;
  ropt.mode = o.mode;
  ropt.alerts = alerts.get();
  auto rt = svm::SvmRuntime::create(*ch, **engine, client.doorbells(), client.doorbells(),
                                    client.self_id(), 0, ropt);
  if (!rt) return fail(rt.error().message);

  rpc::UniqueFd status;
  if (!o.status.empty()) {
    auto l = listen_status(o.status);
    if (!l) return fail("--status: " + l.error().message);
    status = std::move(*l);
  }

  rpc::Status run_result;
  std::atomic<bool> finished{false};
  std::thread manager([&] {
    run_result = (*rt)->run();
    finished.store(true);
  });
  while (!(*rt)->running() && !finished.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!finished.load()) {
    std::fprintf(stderr, "tosec-svm: %s: engine %s (%s), node %ld, ivshmem peer %u, %u workers\n",
                 o.name.c_str(), o.engine.c_str(), (*engine)->summary().c_str(), o.node,
                 client.self_id(), o.workers);
    std::printf("tosec-svm: ready\n");
    std::fflush(stdout);
  }

  // Main loop: signals, ivshmem peers joining and leaving (their doorbells), status requests.
  int exit_code = 0;
  while (!finished.load()) {
    pollfd fds[2] = {{client.fd(), POLLIN, 0}, {status.get(), POLLIN, 0}};
    (void)::poll(fds, status.valid() ? 2 : 1, 50);
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      if (auto e = client.process_events(); !e) {
        std::fprintf(stderr, "tosec-svm: %s: ivshmem server: %s\n", o.name.c_str(),
                     e.error().message.c_str());
        exit_code = 1;
        (*rt)->stop();
        break;
      }
    }
    if (status.valid() && (fds[1].revents & POLLIN) != 0) {
      rpc::UniqueFd conn(::accept4(status.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn.valid()) {
        const std::string text = (*rt)->stats().DebugString();
        (void)!::write(conn.get(), text.data(), text.size());
      }
    }
    timespec zero{};
    const int sig = ::sigtimedwait(&sigs, nullptr, &zero);
    if (sig == SIGTERM || sig == SIGINT) {
      (*rt)->stop();
      break;
    }
  }
  manager.join();
  if (!o.status.empty()) ::unlink(o.status.c_str());
  if (!run_result) return fail(run_result.message());
  const auto st = (*rt)->stats();
  std::fprintf(stderr,
               "tosec-svm: %s: exit: %llu payloads, %llu blocked, %llu alerts, %llu bad "
               "descriptors, %llu unknown streams\n",
               o.name.c_str(), static_cast<unsigned long long>(st.payloads()),
               static_cast<unsigned long long>(st.verdict_block()),
               static_cast<unsigned long long>(st.alerts()),
               static_cast<unsigned long long>(st.bad_descriptors()),
               static_cast<unsigned long long>(st.unknown_streams()));
  return exit_code;
}
