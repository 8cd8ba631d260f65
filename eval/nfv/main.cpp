// tosec-nfv-proxy: the NFV baseline security VM (proxy.h) as a process, for eval/paper/run.
//
//   tosec-nfv-proxy --forward LISTEN=NEXT [--forward LISTEN=NEXT ...]
//                   [--engine KIND --rules PATH [--option k=v ...]] [--name NAME]
//                   [--guest NAME] [--mode prevent|detect] [--alert-log FILE]
//
// LISTEN and NEXT are ADDR:PORT or [ADDR6]:PORT (numeric; LISTEN may use port 0). Engines are
// those of tosec-svm (the same EngineRegistry::builtin(), the same --engine/--rules/--option
// meaning). Without --engine it relays without inspecting. Prints one "listening LISTEN -> NEXT"
// line per forward and then "tosec-nfv-proxy: ready" on stdout; serves until SIGTERM/SIGINT and
// prints its counters on stderr when it exits.
#include <getopt.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "proxy.h"
#include "tosec/svm/engine_registry.h"

using namespace tosec;

namespace {

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: tosec-nfv-proxy --forward LISTEN=NEXT [--forward LISTEN=NEXT ...]\n"
               "                       [--engine KIND --rules PATH [--option k=v ...]]\n"
               "                       [--name NAME] [--guest NAME] [--mode prevent|detect]\n"
               "                       [--alert-log FILE]\n"
               "  LISTEN, NEXT: ADDR:PORT or [ADDR6]:PORT (numeric); LISTEN may use port 0\n");
  std::exit(code);
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "tosec-nfv-proxy: %s\n", msg.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  eval::ProxyOptions po;
  std::string engine_kind;
  std::string rules;
  std::string alert_log;
  std::map<std::string, std::string> engine_options;
  static const option longopts[] = {
      {"forward", required_argument, nullptr, 'f'}, {"engine", required_argument, nullptr, 'e'},
      {"rules", required_argument, nullptr, 'r'},   {"option", required_argument, nullptr, 'o'},
      {"name", required_argument, nullptr, 'N'},    {"guest", required_argument, nullptr, 'g'},
      {"mode", required_argument, nullptr, 'm'},    {"alert-log", required_argument, nullptr, 'a'},
      {"help", no_argument, nullptr, 'h'},          {nullptr, 0, nullptr, 0}};
  opterr = 0;
  for (int c; (c = ::getopt_long(argc, argv, "h", longopts, nullptr)) != -1;) {
    switch (c) {
      case 'f': {
        const char* eq = std::strchr(optarg, '=');
        if (eq == nullptr) {
          die(std::string("--forward '") + optarg +
              "': expected LISTEN=NEXT (ADDR:PORT=ADDR:PORT)");
        }
        auto l =
            eval::parse_sockaddr(std::string(optarg, static_cast<std::size_t>(eq - optarg)), true);
        if (!l) die("--forward: listen " + l.error().message);
        auto n = eval::parse_sockaddr(eq + 1, false);
        if (!n) die("--forward: next hop " + n.error().message);
        po.forwards.push_back({*l, *n});
        break;
      }
      case 'e':
        engine_kind = optarg;
        break;
      case 'r':
        rules = optarg;
        break;
      case 'o': {
        const char* eq = std::strchr(optarg, '=');
        if (eq == nullptr || eq == optarg) {
          die(std::string("--option '") + optarg + "': expected key=value");
        }
        engine_options[std::string(optarg, static_cast<std::size_t>(eq - optarg))] = eq + 1;
        break;
      }
      case 'N':
        po.name = optarg;
        break;
      case 'g':
        po.guest = optarg;
        break;
      case 'm':
        if (std::strcmp(optarg, "prevent") == 0) {
          po.detect_only = false;
        } else if (std::strcmp(optarg, "detect") == 0) {
          po.detect_only = true;
        } else {
          die(std::string("--mode '") + optarg + "': expected prevent or detect");
        }
        break;
      case 'a':
        alert_log = optarg;
        break;
      case 'h':
        usage(0);
      case '?':
        if (optopt != 0) {
          die(std::string("option -") + static_cast<char>(optopt) +
              " needs an argument or is unknown");
        }
        die(std::string("unknown or incomplete option '") + argv[optind - 1] + "' (see --help)");
      default:
        usage(2);
    }
  }
  if (optind < argc) die(std::string("unexpected argument '") + argv[optind] + "'");
  if (po.forwards.empty()) die("at least one --forward LISTEN=NEXT is required");
  if (engine_kind.empty() && (!rules.empty() || !engine_options.empty())) {
    die("--rules and --option need --engine");
  }
  if (!engine_kind.empty() && rules.empty()) die("--engine " + engine_kind + " needs --rules");

  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  std::unique_ptr<svm::Engine> engine;
  if (!engine_kind.empty()) {
    const auto registry = svm::EngineRegistry::builtin();
    auto e = registry.create(engine_kind, svm::EngineConfig{po.name, rules, engine_options});
    if (!e) die("engine '" + engine_kind + "': " + e.error().message);
    engine = std::move(*e);
  }
  std::unique_ptr<svm::AlertLog> alerts;
  if (!alert_log.empty()) {
    auto l = svm::AlertLog::open(alert_log);
    if (!l) die(l.error().message);
    alerts = std::move(*l);
  }
  const std::string name = po.name;
  std::vector<std::string> next_hops;
  for (const auto& f : po.forwards) next_hops.push_back(f.next_hop.text());
  auto proxy = eval::Proxy::create(std::move(po), engine.get(), alerts.get());
  if (!proxy) die(proxy.error().message);
  const auto bound = (*proxy)->bound();
  std::fprintf(stderr, "tosec-nfv-proxy: %s: engine %s\n", name.c_str(),
               engine ? (std::string(engine->kind()) + " (" + engine->summary() + ")").c_str()
                      : "none (plain relay)");
  for (std::size_t i = 0; i < bound.size(); ++i) {
    std::printf("listening %s -> %s\n", bound[i].text().c_str(), next_hops[i].c_str());
  }
  std::printf("tosec-nfv-proxy: ready\n");
  std::fflush(stdout);

  auto st = (*proxy)->run();
  const auto& s = (*proxy)->stats();
  std::fprintf(stderr,
               "tosec-nfv-proxy: %s: exit: %llu connections, %llu payloads, %llu bytes to "
               "server, %llu bytes to client, %llu blocked, %llu alerts, %llu connect failures\n",
               name.c_str(), static_cast<unsigned long long>(s.connections),
               static_cast<unsigned long long>(s.payloads),
               static_cast<unsigned long long>(s.bytes_to_server),
               static_cast<unsigned long long>(s.bytes_to_client),
               static_cast<unsigned long long>(s.blocked),
               static_cast<unsigned long long>(s.alerts),
               static_cast<unsigned long long>(s.connect_failures));
  if (!st) {
    std::fprintf(stderr, "tosec-nfv-proxy: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
