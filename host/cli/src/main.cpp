// tosec: the operator CLI (docs/cli.md).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tosec/cli/alerts.h"
#include "tosec/cli/config.h"
#include "tosec/cli/hostd_client.h"
#include "tosec/cli/launch.h"
#include "tosec/cli/platform.h"
#include "tosec/cli/run.h"
#include "tosec/cli/status.h"
#include "tosec/cli/supervisor.h"
#include "tosec/hostd/topology.h"
#include "tosec/provision/libvirt.h"
#include "tosec/v1/hostd.grpc.pb.h"

#ifndef TOSEC_VERSION
#define TOSEC_VERSION "0.0.0"
#endif

namespace {

using namespace tosec::cli;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotRunning = 3;
constexpr const char* kSystemConfig = "/etc/tosec/tosec.toml";

const char* const kMainHelp =
    "Usage: tosec COMMAND [OPTIONS]\n"
    "Operator CLI of TOSEC: runs guest applications on an offloaded TCP/IP stack (TOE) and\n"
    "manages the platform (ivshmem server + TOE per guest).\n"
    "\n"
    "Commands:\n"
    "  run [-c CONFIG] [--guest NAME] [--exclude LIST] -- CMD [ARGS...]\n"
    "                 run CMD as a guest application (embedded platform if none is up)\n"
    "  up [-c CONFIG]   start the platform in the background (supervised)\n"
    "  down [-c CONFIG] stop it (idempotent)\n"
    "  status [-c CONFIG] [--json]   guests, TOE processes, sockets, bytes, errors\n"
    "  stats [-c CONFIG]             status as JSON\n"
    "  alerts [-c CONFIG] [--follow] [--json] [--file FILE]\n"
    "                                alerts and blocks of the SVM chains\n"
    "  chain set NAME STEPS [--fail closed|open]   add or replace a chain, live\n"
    "  policy add NAME --guest G --chain C [--direction out|in|both] [--protocol P]\n"
    "             [--remote CIDR] [--local CIDR] [--port N[-M]]   add a policy, live\n"
    "  policy rm NAME                remove a policy, live\n"
    "  topology [--json]             chains and policies in force (and the generation)\n"
    "  provision [-c CONFIG] [--connect URI] [--dry-run|--define|--start|--destroy]\n"
    "                                libvirt domains of the TOVM, SVMs and guests (VM mode)\n"
    "  help [COMMAND]                this help, or a command's\n"
    "\n"
    "Options: -h, --help (also after a command), --version.\n"
    "Config: -c CONFIG, else $TOSEC_CONFIG, else /etc/tosec/tosec.toml if it exists, else\n"
    "built-in defaults (one guest \"default\", runtime dir /run/tosec). See docs/config.md.\n"
    "Exit codes: 0 ok, 1 failed, 2 usage or config error, 3 no platform running (status);\n"
    "run: the command's status (128+N if killed by signal N), 125 platform error,\n"
    "126 command not executable, 127 command not found.\n";

const char* const kRunHelp =
    "Usage: tosec run [-c CONFIG] [--guest NAME] [--exclude LIST] [--embedded] [--keep]\n"
    "                 [--runtime-dir DIR] [--chain SPEC [--fail closed|open]]\n"
    "                 [--alerts FILE] [--] CMD [ARGS...]\n"
    "Runs CMD with its sockets offloaded to the guest's TOE (LD_PRELOAD=libtosec-preload.so).\n"
    "If `tosec up` runs a platform for the guest (in the config's runtime dir), CMD joins it;\n"
    "otherwise an embedded platform (ivshmem server + TOE) is started in a private runtime dir\n"
    "under /tmp for CMD's lifetime and removed afterwards.\n"
    "  -c, --config CONFIG   platform config (docs/config.md)\n"
    "  --guest NAME          guest to run as (default: the config's first guest; with no -c\n"
    "                        and a running platform, its only guest or \"default\")\n"
    "  --exclude LIST        comma list of CIDRs and port:N kept on the kernel stack, added to\n"
    "                        the guest's exclude list\n"
    "  --embedded            always use an embedded platform, even if one is up\n"
    "  --keep                keep the embedded runtime dir (logs) and print its path\n"
    "  --runtime-dir DIR     override [platform] runtime_dir\n"
    "  --chain SPEC          inspect every stream of the guest with this SVM chain: steps\n"
    "                        separated by ',', a parallel group joined by '+', each an\n"
    "                        [[svm]] name or an engine (ids, waf, av, acl) with its shipped\n"
    "                        rules, e.g. --chain ids,waf+av (embedded platform only)\n"
    "  --fail closed|open    fail policy of --chain (default closed)\n"
    "  --alerts FILE         append alert lines (EVE JSON) to FILE instead of the runtime\n"
    "                        dir's logs/eve.json\n"
    "Exit: CMD's exit status (128+N if killed by signal N); 125 platform error, 126 CMD not\n"
    "executable, 127 CMD not found, 2 usage/config error.\n"
    "Environment: TOSEC_PRELOAD (shim path), TOSEC_BIN_DIR (platform binaries).\n";

const char* const kUpHelp =
    "Usage: tosec up [-c CONFIG] [--runtime-dir DIR]\n"
    "Starts the host daemon tosec-hostd, which starts an ivshmem server and a TOE for every\n"
    "guest of CONFIG (and the SVMs of their chains), restarts crashed processes (exponential\n"
    "backoff) and serves the gRPC API on RUNTIME_DIR/hostd.sock. Returns 0 once every TOE is\n"
    "ready, 1 with the error otherwise. Logs: RUNTIME_DIR/logs/.\n";

const char* const kDownHelp =
    "Usage: tosec down [-c CONFIG] [--runtime-dir DIR]\n"
    "Stops the platform of the runtime dir (SIGTERM to the supervisor, which stops its\n"
    "children) and waits. Exit 0 also if nothing was running.\n";

const char* const kStatusHelp =
    "Usage: tosec status [-c CONFIG] [--runtime-dir DIR] [--json]\n"
    "Shows each guest's TOE: pid, uptime, lanes (guest processes), sockets by state, bytes,\n"
    "rx backpressure events, bad descriptors. --json prints one JSON document.\n"
    "Exit 3 if no platform is running in the runtime dir.\n";

const char* const kStatsHelp =
    "Usage: tosec stats [-c CONFIG] [--runtime-dir DIR] [--json]\n"
    "Same as `tosec status --json`. Prometheus metrics: [host] metrics_listen in the config\n"
    "(docs/control-plane.md).\n";

const char* const kChainHelp =
    "Usage: tosec chain set NAME STEPS [--fail closed|open] [-c CONFIG] [--runtime-dir DIR]\n"
    "                 [--json]\n"
    "Adds or replaces chain NAME on the running platform, live: STEPS is a comma list of\n"
    "steps, a parallel group joined with '+' (ids,waf+av), of SVMs that already run for the\n"
    "guests whose policies select it. New streams take it; existing streams keep their chain.\n"
    "Exit: 0 ok, 1 failed, 2 invalid (the message names the field), 3 no platform.\n";

const char* const kPolicyHelp =
    "Usage: tosec policy add NAME --guest G --chain C [--direction out|in|both]\n"
    "                  [--protocol tcp|udp|any] [--remote CIDR] [--local CIDR] [--port N[-M]]\n"
    "       tosec policy rm NAME\n"
    "       (both take [-c CONFIG] [--runtime-dir DIR] [--json])\n"
    "Adds (ahead of the others; a policy of the same name is replaced in place) or removes a\n"
    "policy on the running platform, live. New streams follow the new policies; existing\n"
    "streams keep their chain. Config policies without a name are policy-1, policy-2, ...\n"
    "Exit: 0 ok, 1 failed, 2 invalid or unknown policy, 3 no platform.\n";

const char* const kTopologyHelp =
    "Usage: tosec topology [-c CONFIG] [--runtime-dir DIR] [--json]\n"
    "The running platform's chains and policies and the topology generation in force.\n";

const char* const kAlertsHelp =
    "Usage: tosec alerts [-c CONFIG] [--runtime-dir DIR] [--file FILE] [--follow] [--json]\n"
    "With a platform up (and no --file) the alerts come from tosec-hostd (gRPC StreamAlerts).\n"
    "Shows the alerts and blocks of the SVM chains, one line each: time, action, guest, SVM,\n"
    "rule id, message, the stream's client -> server addresses, direction. They come from\n"
    "the alert log RUNTIME_DIR/logs/eve.json (EVE-style JSON lines, docs/svm.md), or FILE\n"
    "(e.g. the one `tosec run --alerts FILE` wrote).\n"
    "  --follow   keep printing new alerts until interrupted\n"
    "  --json     print the JSON lines as they are\n";

const char* const kProvisionHelp =
    "Usage: tosec provision [-c CONFIG] [--runtime-dir DIR] [--connect URI]\n"
    "                       [--dry-run [--output DIR] | --define | --start | --destroy]\n"
    "VM mode: the libvirt domains (TCG) of the TOVM, each SVM and each guest of CONFIG, with\n"
    "ivshmem-doorbell <shmem> devices on the platform's ivshmem server sockets. See\n"
    "docs/provisioning.md.\n"
    "  --dry-run      print the domain XML (the default); --output DIR writes DIR/<domain>.xml\n"
    "  --define       define (or redefine) the domains\n"
    "  --start        define them and start those not running (TOVM, SVMs, then guests)\n"
    "  --destroy      stop and undefine them (guests first); missing ones are skipped\n"
    "  --connect URI  libvirt URI (default $LIBVIRT_DEFAULT_URI, else qemu:///system)\n"
    "Exit: 0 ok, 1 a libvirt error (the message names the domain), 2 usage or config error.\n";

int usage_error(const std::string& cmd, const std::string& msg) {
  std::fprintf(stderr, "tosec: %s\nTry 'tosec %s--help'.\n", msg.c_str(),
               cmd.empty() ? "" : (cmd + " ").c_str());
  return kExitUsage;
}

struct CommonOptions {
  std::optional<std::string> config;
  std::optional<std::string> runtime_dir;
  bool help = false;
};

// Consumes -c/--config, --runtime-dir, -h/--help at args[*i]. Returns false if not one of them.
// Sets *error on a missing value.
bool common_option(const std::vector<std::string>& args, std::size_t* i, CommonOptions* o,
                   std::string* error) {
  const std::string& a = args[*i];
  auto value = [&](const std::string& name) -> std::optional<std::string> {
    if (a.starts_with(name + "=")) return a.substr(name.size() + 1);
    if (*i + 1 >= args.size()) {
      *error = "option " + name + " needs a value";
      return std::nullopt;
    }
    return args[++*i];
  };
  if (a == "-h" || a == "--help") {
    o->help = true;
    return true;
  }
  if (a == "-c" || a == "--config" || a.starts_with("--config=")) {
    o->config = value(a == "-c" ? "-c" : "--config");
    return true;
  }
  if (a == "--runtime-dir" || a.starts_with("--runtime-dir=")) {
    o->runtime_dir = value("--runtime-dir");
    return true;
  }
  return false;
}

// Loads the config the options name (or the default chain). Prints and returns nullopt on error.
std::optional<Config> load(const CommonOptions& o, bool* given) {
  std::optional<std::string> path = o.config;
  if (!path) {
    if (const char* env = std::getenv("TOSEC_CONFIG"); env != nullptr && *env != '\0') {
      path = env;
    } else if (::access(kSystemConfig, F_OK) == 0) {
      path = kSystemConfig;
    }
  }
  if (given != nullptr) *given = path.has_value();
  Config cfg = default_config();
  if (path) {
    auto c = load_config(*path);
    if (!c) {
      std::fprintf(stderr, "tosec: %s\n", c.error().message.c_str());
      return std::nullopt;
    }
    cfg = std::move(*c);
  }
  if (o.runtime_dir) {
    std::string d = *o.runtime_dir;
    if (d.empty() || d[0] != '/' || d.size() > kMaxRuntimeDirLength) {
      std::fprintf(stderr,
                   "tosec: --runtime-dir: must be an absolute path of at most %zu "
                   "characters, got \"%s\"\n",
                   kMaxRuntimeDirLength, d.c_str());
      return std::nullopt;
    }
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    cfg.platform.runtime_dir = d;
  }
  return cfg;
}

int cmd_run(const std::vector<std::string>& args) {
  CommonOptions co;
  RunOptions ro;
  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string err;
    if (a == "--") {
      ++i;
      break;
    }
    if (common_option(args, &i, &co, &err)) {
      if (!err.empty()) return usage_error("run", err);
      if (co.help) {
        std::fputs(kRunHelp, stdout);
        return kExitOk;
      }
      continue;
    }
    if (a == "--guest" || a.starts_with("--guest=")) {
      if (a == "--guest" && i + 1 >= args.size())
        return usage_error("run", "--guest needs a value");
      ro.guest = a == "--guest" ? args[++i] : a.substr(8);
      continue;
    }
    if (a == "--exclude" || a.starts_with("--exclude=")) {
      if (a == "--exclude" && i + 1 >= args.size()) {
        return usage_error("run", "--exclude needs a value");
      }
      const std::string list = a == "--exclude" ? args[++i] : a.substr(10);
      auto parsed = parse_exclude_list(list);
      if (!parsed) return usage_error("run", "--exclude: " + parsed.error().message);
      ro.exclude.insert(ro.exclude.end(), parsed->begin(), parsed->end());
      continue;
    }
    if (a == "--embedded") {
      ro.embedded = true;
      continue;
    }
    if (a == "--keep") {
      ro.keep_runtime_dir = true;
      continue;
    }
    if (a == "--chain" || a == "--fail" || a == "--alerts") {
      if (i + 1 >= args.size()) return usage_error("run", a + " needs a value");
      const std::string& v = args[++i];
      if (a == "--chain") ro.chain = v;
      if (a == "--fail") ro.fail = v;
      if (a == "--alerts") ro.alert_log = v;
      continue;
    }
    if (a.starts_with("-") && a != "-") return usage_error("run", "unknown option '" + a + "'");
    break;  // first non-option: the command
  }
  ro.command.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (ro.command.empty()) return usage_error("run", "no command given");
  auto cfg = load(co, &ro.config_given);
  if (!cfg) return kExitUsage;
  return run_command(*cfg, ro);
}

// Parses options of up/down/status/stats. Returns -1 to continue, else an exit code.
int parse_simple(const std::string& cmd, const char* help, const std::vector<std::string>& args,
                 CommonOptions* co, bool* json) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string err;
    if (common_option(args, &i, co, &err)) {
      if (!err.empty()) return usage_error(cmd, err);
      if (co->help) {
        std::fputs(help, stdout);
        return kExitOk;
      }
      continue;
    }
    if (json != nullptr && args[i] == "--json") {
      *json = true;
      continue;
    }
    return usage_error(cmd, "unexpected argument '" + args[i] + "'");
  }
  return -1;
}

int cmd_up(const std::vector<std::string>& args) {
  CommonOptions co;
  if (int r = parse_simple("up", kUpHelp, args, &co, nullptr); r >= 0) return r;
  auto cfg = load(co, nullptr);
  if (!cfg) return kExitUsage;
  auto bin = resolve_binaries(std::getenv("TOSEC_BIN_DIR"), self_dir());
  if (!bin) {
    std::fprintf(stderr, "tosec: %s\n", bin.error().message.c_str());
    return kExitFailed;
  }
  if (auto s = platform_up(*cfg, *bin); !s) {
    std::fprintf(stderr, "tosec: up: %s\n", s.message().c_str());
    return kExitFailed;
  }
  std::printf("tosec: platform up: %zu guest(s) in %s (logs in %s/logs)\n", cfg->guests.size(),
              cfg->platform.runtime_dir.c_str(), cfg->platform.runtime_dir.c_str());
  return kExitOk;
}

int cmd_down(const std::vector<std::string>& args) {
  CommonOptions co;
  if (int r = parse_simple("down", kDownHelp, args, &co, nullptr); r >= 0) return r;
  auto cfg = load(co, nullptr);
  if (!cfg) return kExitUsage;
  bool was_running = false;
  if (auto s = platform_down(cfg->platform.runtime_dir, &was_running); !s) {
    std::fprintf(stderr, "tosec: down: %s\n", s.message().c_str());
    return kExitFailed;
  }
  std::printf(
      was_running ? "tosec: platform in %s stopped\n" : "tosec: no platform running in %s\n",
      cfg->platform.runtime_dir.c_str());
  return kExitOk;
}

// A stub for the daemon of `dir`; nullptr (after saying so) when no platform runs there.
std::unique_ptr<tosec::v1::HostControl::Stub> hostd_of(const std::string& dir) {
  if (!live_supervisor(dir)) {
    std::fprintf(stderr, "tosec: no platform running in %s (start one with `tosec up`)\n",
                 dir.c_str());
    return nullptr;
  }
  return connect_hostd(dir);
}

// The daemon's roles under the guests' table of `tosec status`.
std::string render_roles_table(const tosec::v1::StatusResponse& sr) {
  static const char* const kStates[] = {"unspecified", "down",     "starting",
                                        "up",          "degraded", "stopping"};
  const auto state = static_cast<std::size_t>(sr.state());
  std::string out = "\nhostd: pid " + std::to_string(sr.pid()) + ", " +
                    (state < std::size(kStates) ? kStates[state] : "?") + ", topology generation " +
                    std::to_string(sr.topology_generation());
  if (!sr.metrics_address().empty()) out += ", metrics http://" + sr.metrics_address() + "/metrics";
  out += "\n";
  char line[160];
  std::snprintf(line, sizeof line, "%-28s %-5s %-11s %-8s %s\n", "ROLE", "KIND", "STATE", "PID",
                "RESTARTS");
  out += line;
  for (const auto& r : sr.roles()) {
    std::snprintf(line, sizeof line, "%-28s %-5s %-11s %-8d %u\n", r.name().c_str(),
                  r.kind().c_str(), r.state().c_str(), r.pid(), r.restarts());
    out += line;
  }
  return out;
}

int cmd_status(const std::string& name, const char* help, const std::vector<std::string>& args,
               bool json) {
  CommonOptions co;
  bool json_flag = false;
  if (int r = parse_simple(name, help, args, &co, &json_flag); r >= 0) return r;
  json = json || json_flag;
  auto cfg = load(co, nullptr);
  if (!cfg) return kExitUsage;
  const std::string& dir = cfg->platform.runtime_dir;
  auto stub = hostd_of(dir);
  if (!stub) return kExitNotRunning;
  tosec::v1::GetGuestStatusResponse resp;
  if (auto st = stub->GetGuestStatus(call_context(std::chrono::seconds(30)).get(), {}, &resp);
      !st.ok()) {
    std::fprintf(stderr, "tosec: %s: tosec-hostd: %s\n", name.c_str(), describe(st).c_str());
    return exit_code(st);
  }
  std::vector<GuestStatus> guests;
  for (const auto& g : resp.guests()) guests.push_back({g.guest(), g.json(), g.error()});
  std::string out = json ? render_status_json(dir, resp.pid(), guests)
                         : render_status_table(dir, resp.pid(), guests);
  if (!json) {
    tosec::v1::StatusResponse sr;
    if (stub->Status(call_context(std::chrono::seconds(10)).get(), {}, &sr).ok()) {
      out += render_roles_table(sr);
    }
  }
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

std::atomic<bool> g_alerts_stop{false};

int alerts_from_hostd(const Config& cfg, const AlertsOptions& ao) {
  auto stub = connect_hostd(cfg.platform.runtime_dir);
  grpc::ClientContext ctx;
  tosec::v1::StreamAlertsRequest req;
  req.set_follow(ao.follow);
  req.set_backlog(~0U);
  auto reader = stub->StreamAlerts(&ctx, req);
  // The stream blocks in Read(); a signal sets the flag, and this thread cancels the call.
  std::thread canceller([&] {
    while (!g_alerts_stop.load() && ao.follow) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (ao.follow) ctx.TryCancel();
  });
  tosec::v1::Alert a;
  std::size_t n = 0;
  while (reader->Read(&a)) {
    ++n;
    const std::string line = ao.raw ? a.eve_json() : render_alert_line(a.eve_json());
    std::fprintf(stdout, "%s\n", line.c_str());
    std::fflush(stdout);
  }
  const grpc::Status st = reader->Finish();
  g_alerts_stop.store(true);
  canceller.join();
  if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED) {
    std::fprintf(stderr, "tosec: alerts: tosec-hostd: %s\n", describe(st).c_str());
    return exit_code(st);
  }
  if (n == 0 && !ao.follow) std::fprintf(stdout, "no alerts\n");
  return kExitOk;
}

int cmd_alerts(const std::vector<std::string>& args) {
  CommonOptions co;
  AlertsOptions ao;
  std::optional<std::string> file;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string err;
    if (common_option(args, &i, &co, &err)) {
      if (!err.empty()) return usage_error("alerts", err);
      if (co.help) {
        std::fputs(kAlertsHelp, stdout);
        return kExitOk;
      }
      continue;
    }
    if (args[i] == "--follow" || args[i] == "-f") {
      ao.follow = true;
    } else if (args[i] == "--json") {
      ao.raw = true;
    } else if (args[i] == "--file" && i + 1 < args.size()) {
      file = args[++i];
    } else {
      return usage_error("alerts", "unexpected argument '" + args[i] + "'");
    }
  }
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_alerts_stop.store(true); };
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  if (file) {
    ao.path = *file;
  } else {
    auto cfg = load(co, nullptr);
    if (!cfg) return kExitUsage;
    ao.path = cfg->platform.runtime_dir + "/logs/eve.json";
    // With a platform up the daemon streams them; after `tosec down` the log is read directly.
    if (live_supervisor(cfg->platform.runtime_dir)) return alerts_from_hostd(*cfg, ao);
  }
  if (auto s = show_alerts(ao, stdout, &g_alerts_stop); !s) {
    std::fprintf(stderr, "tosec: alerts: %s\n", s.message().c_str());
    return kExitFailed;
  }
  return kExitOk;
}

// Options shared by the live-change commands; the rest are collected as (flag, value) pairs.
struct ChangeArgs {
  CommonOptions co;
  bool json = false;
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> flags;
};

int parse_change(const std::string& cmd, const char* help, const std::vector<std::string>& args,
                 const std::vector<std::string>& value_flags, ChangeArgs* out) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string err;
    if (common_option(args, &i, &out->co, &err)) {
      if (!err.empty()) return usage_error(cmd, err);
      if (out->co.help) {
        std::fputs(help, stdout);
        return kExitOk;
      }
      continue;
    }
    const std::string& a = args[i];
    if (a == "--json") {
      out->json = true;
    } else if (std::find(value_flags.begin(), value_flags.end(), a) != value_flags.end()) {
      if (i + 1 >= args.size()) return usage_error(cmd, a + " needs a value");
      out->flags.emplace_back(a, args[++i]);
    } else if (a.starts_with("-")) {
      return usage_error(cmd, "unknown option '" + a + "'");
    } else {
      out->positional.push_back(a);
    }
  }
  return -1;
}

// Runs one live-change call against the running platform and prints its outcome.
template <typename Response, typename Call>
int run_change(const ChangeArgs& ca, const std::string& what, Call call) {
  auto cfg = load(ca.co, nullptr);
  if (!cfg) return kExitUsage;
  const std::string& dir = cfg->platform.runtime_dir;
  auto stub = hostd_of(dir);
  if (!stub) return kExitNotRunning;
  Response resp;
  const grpc::Status st = call(*stub, call_context(std::chrono::seconds(60)).get(), &resp);
  if (!st.ok()) {
    if (ca.json) {
      std::printf("{\"ok\": false, \"code\": %d, \"error\": %s}\n",
                  static_cast<int>(st.error_code()), json_quote(st.error_message()).c_str());
    }
    std::fprintf(stderr, "tosec: %s: %s\n", what.c_str(), describe(st).c_str());
    return exit_code(st);
  }
  if (ca.json) {
    std::string warnings;
    for (const auto& w : resp.warnings())
      warnings += (warnings.empty() ? "" : ", ") + json_quote(w);
    std::printf("{\"ok\": true, \"generation\": %llu, \"warnings\": [%s]}\n",
                static_cast<unsigned long long>(resp.generation()), warnings.c_str());
  } else {
    std::printf("tosec: %s (topology generation %llu)\n", what.c_str(),
                static_cast<unsigned long long>(resp.generation()));
    for (const auto& w : resp.warnings()) std::fprintf(stderr, "tosec: warning: %s\n", w.c_str());
  }
  return kExitOk;
}

int cmd_chain(const std::vector<std::string>& args) {
  ChangeArgs ca;
  if (int r = parse_change("chain", kChainHelp, args, {"--fail"}, &ca); r >= 0) return r;
  if (ca.positional.size() != 3 || ca.positional[0] != "set") {
    return usage_error("chain", "expected: chain set NAME STEPS");
  }
  tosec::v1::Chain chain;
  chain.set_name(ca.positional[1]);
  auto steps = tosec::hostd::parse_chain_steps(ca.positional[2]);
  if (!steps) return usage_error("chain", steps.error().message);
  for (const auto& step : *steps) {
    auto* s = chain.add_steps();
    if (step.size() == 1) {
      s->set_svm(step[0]);
    } else {
      for (const auto& m : step) s->mutable_parallel()->add_svms(m);
    }
  }
  chain.set_fail_policy(tosec::v1::FAIL_POLICY_FAIL_CLOSED);
  for (const auto& [flag, v] : ca.flags) {
    if (v != "closed" && v != "open") return usage_error("chain", "--fail: closed or open");
    if (v == "open") chain.set_fail_policy(tosec::v1::FAIL_POLICY_FAIL_OPEN);
  }
  tosec::v1::SetChainRequest req;
  *req.mutable_chain() = chain;
  return run_change<tosec::v1::SetChainResponse>(
      ca, "chain " + chain.name() + " set", [&](auto& stub, grpc::ClientContext* ctx, auto* resp) {
        return stub.SetChain(ctx, req, resp);
      });
}

int cmd_policy(const std::vector<std::string>& args) {
  ChangeArgs ca;
  if (int r = parse_change(
          "policy", kPolicyHelp, args,
          {"--guest", "--chain", "--direction", "--protocol", "--remote", "--local", "--port"},
          &ca);
      r >= 0) {
    return r;
  }
  if (ca.positional.size() == 2 && ca.positional[0] == "rm") {
    if (!ca.flags.empty()) return usage_error("policy", "policy rm takes only NAME");
    tosec::v1::RemovePolicyRequest req;
    req.set_name(ca.positional[1]);
    return run_change<tosec::v1::RemovePolicyResponse>(
        ca, "policy " + req.name() + " removed",
        [&](auto& stub, grpc::ClientContext* ctx, auto* resp) {
          return stub.RemovePolicy(ctx, req, resp);
        });
  }
  if (ca.positional.size() != 2 || ca.positional[0] != "add") {
    return usage_error("policy", "expected: policy add NAME ... or policy rm NAME");
  }
  // The config's [[policy]] keys, checked by the config's own rules (docs/config.md).
  PolicyConfig p;
  p.name = ca.positional[1];
  for (const auto& [flag, v] : ca.flags) {
    if (flag == "--guest") p.guest = v;
    if (flag == "--chain") p.chain = v;
    if (flag == "--direction") p.direction = v;
    if (flag == "--protocol") p.protocol = v;
    if (flag == "--remote") p.remote = v;
    if (flag == "--local") p.local = v;
    if (flag == "--port") p.port = v;
  }
  if (p.guest.empty() || p.chain.empty()) {
    return usage_error("policy", "policy add needs --guest and --chain");
  }
  if (p.direction != "out" && p.direction != "in" && p.direction != "both") {
    return usage_error("policy", "--direction: out, in or both");
  }
  if (p.protocol != "tcp" && p.protocol != "udp" && p.protocol != "any") {
    return usage_error("policy", "--protocol: tcp, udp or any");
  }
  for (const auto* cidr : {&p.remote, &p.local}) {
    if (cidr->empty()) continue;
    if (auto s = check_cidr(*cidr); !s) return usage_error("policy", s.message());
  }
  if (!p.port.empty()) {
    if (auto s = check_port_spec(p.port); !s)
      return usage_error("policy", "--port: " + s.message());
  }
  Config one = default_config();
  one.policies = {p};
  one.chains = {ChainConfig{p.chain, {}, "closed", 2000}};
  auto topo = tosec::hostd::config_to_topology(one, 0);
  tosec::v1::AddPolicyRequest req;
  *req.mutable_policy() = topo.policies(0);
  return run_change<tosec::v1::AddPolicyResponse>(
      ca, "policy " + p.name + " added", [&](auto& stub, grpc::ClientContext* ctx, auto* resp) {
        return stub.AddPolicy(ctx, req, resp);
      });
}

int cmd_topology(const std::vector<std::string>& args) {
  ChangeArgs ca;
  if (int r = parse_change("topology", kTopologyHelp, args, {}, &ca); r >= 0) return r;
  if (!ca.positional.empty()) return usage_error("topology", "unexpected argument");
  auto cfg = load(ca.co, nullptr);
  if (!cfg) return kExitUsage;
  auto stub = hostd_of(cfg->platform.runtime_dir);
  if (!stub) return kExitNotRunning;
  tosec::v1::Topology t;
  const grpc::Status st = stub->GetTopology(call_context(std::chrono::seconds(10)).get(), {}, &t);
  if (!st.ok()) {
    std::fprintf(stderr, "tosec: topology: %s\n", describe(st).c_str());
    return exit_code(st);
  }
  std::fputs(tosec::hostd::render_topology(t, ca.json).c_str(), stdout);
  return kExitOk;
}

int cmd_provision(const std::vector<std::string>& args) {
  namespace pv = tosec::provision;
  CommonOptions co;
  pv::ProvisionOptions po;
  int actions = 0;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string err;
    if (common_option(args, &i, &co, &err)) {
      if (!err.empty()) return usage_error("provision", err);
      if (co.help) {
        std::fputs(kProvisionHelp, stdout);
        return kExitOk;
      }
    } else if (a == "--dry-run" || a == "--define" || a == "--start" || a == "--destroy") {
      ++actions;
      po.action = a == "--dry-run"  ? pv::Action::kDryRun
                  : a == "--define" ? pv::Action::kDefine
                  : a == "--start"  ? pv::Action::kStart
                                    : pv::Action::kDestroy;
    } else if (a == "--connect" || a == "--output") {
      if (i + 1 >= args.size()) return usage_error("provision", a + " needs a value");
      (a == "--connect" ? po.uri : po.output_dir) = args[++i];
    } else {
      return usage_error("provision", "unexpected argument '" + a + "'");
    }
  }
  if (actions > 1) {
    return usage_error("provision", "give one of --dry-run, --define, --start, --destroy");
  }
  if (!po.output_dir.empty() && po.action != pv::Action::kDryRun) {
    return usage_error("provision", "--output goes with --dry-run");
  }
  auto cfg = load(co, nullptr);
  if (!cfg) return kExitUsage;
  return pv::provision_command(*cfg, po, stdout, stderr);
}

}  // namespace

int main(int argc, char* argv[]) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(kMainHelp, stderr);
    return kExitUsage;
  }
  const std::string cmd = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "-h" || cmd == "--help" || (cmd == "help" && rest.empty())) {
    std::fputs(kMainHelp, stdout);
    return kExitOk;
  }
  if (cmd == "--version" || cmd == "version") {
    std::printf("tosec %s\n", TOSEC_VERSION);
    return kExitOk;
  }
  if (cmd == "help") {
    const std::string& what = rest[0];
    const char* text = what == "run"         ? kRunHelp
                       : what == "up"        ? kUpHelp
                       : what == "down"      ? kDownHelp
                       : what == "status"    ? kStatusHelp
                       : what == "stats"     ? kStatsHelp
                       : what == "alerts"    ? kAlertsHelp
                       : what == "provision" ? kProvisionHelp
                       : what == "chain"     ? kChainHelp
                       : what == "policy"    ? kPolicyHelp
                       : what == "topology"  ? kTopologyHelp
                                             : nullptr;
    if (text == nullptr) return usage_error("", "unknown command '" + what + "'");
    std::fputs(text, stdout);
    return kExitOk;
  }
  if (cmd == "run") return cmd_run(rest);
  if (cmd == "up") return cmd_up(rest);
  if (cmd == "down") return cmd_down(rest);
  if (cmd == "status") return cmd_status("status", kStatusHelp, rest, false);
  if (cmd == "stats") return cmd_status("stats", kStatsHelp, rest, true);
  if (cmd == "alerts") return cmd_alerts(rest);
  if (cmd == "provision") return cmd_provision(rest);
  if (cmd == "chain") return cmd_chain(rest);
  if (cmd == "policy") return cmd_policy(rest);
  if (cmd == "topology") return cmd_topology(rest);
  return usage_error("", "unknown command '" + cmd + "'");
}
