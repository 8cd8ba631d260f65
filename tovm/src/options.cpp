#include "tosec/tovm/options.h"

#include <getopt.h>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <string_view>
#include <vector>

#include "tosec/rpc/cpu_list.h"

namespace tosec::tovm {

namespace {

template <class T>
rpc::Status parse_num(const char* flag, const char* text, T& out, T min, T max) {
  const std::string_view s(text);
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v < min || v > max) {
    return rpc::Error{EINVAL, std::string("--") + flag + ": invalid value '" + std::string(s) +
                                  "' (expected " + std::to_string(min) + ".." +
                                  std::to_string(max) + ")"};
  }
  out = v;
  return {};
}

}  // namespace

std::string tovm_usage(const char* prog) {
  return std::string("Usage: ") + prog +
         " [--workers N] [--cpus LIST] [--spin-ns N] [--log-level error|info|debug]\n"
         "       [GEOMETRY...]\n"
         "       --guest NAME --ivshmem SOCKET --sidecar PATH [--status PATH] [--vm-agent]\n"
         "       [GEOMETRY...]\n"
         "       [--inspect-ivshmem SOCKET --topology FILE [--alert-log FILE]]\n"
         "       [--guest NAME ... (one group per guest)]\n"
         "GEOMETRY: [--lanes N] [--max-sockets N] [--ring-slots N] [--socket-rx-entries N]\n"
         "          [--chunk-size N] [--tx-chunks-per-lane N] [--rx-chunks N]\n"
         "TCP offload engine for one or more guests (docs/tovm.md): each --guest opens a group\n"
         "that the flags after it belong to; geometry before the first --guest is every guest's\n"
         "default. Guest i is served by worker thread i % N; with --cpus (e.g. 1 or 2-3,6)\n"
         "worker i runs only on the i-th CPU of the list, round robin. With --inspect-ivshmem a\n"
         "guest's streams go through the SVM chains its topology selects (docs/svm.md).\n"
         "--vm-agent serves a VM through its in-guest agent on the last lane (VM mode,\n"
         "docs/tovm.md).\n";
}

namespace {

// The numeric flags: one row each (name, limits, the option it sets). The getopt value of row i
// is kNumericBase + i.
struct U32Flag {
  const char* name;
  std::uint32_t min;
  std::uint32_t max;
  std::uint32_t& (*field)(TovmOptions&);
};
constexpr std::uint32_t kMaxU32 = 0xFFFFFFFFU;
constexpr U32Flag kU32Flags[] = {
    {"lanes", 1, kMaxU32, [](TovmOptions& o) -> std::uint32_t& { return o.channel.lanes; }},
    {"max-sockets", 1, kMaxU32,
     [](TovmOptions& o) -> std::uint32_t& { return o.channel.max_sockets; }},
    {"ring-slots", 1, kMaxU32,
     [](TovmOptions& o) -> std::uint32_t& { return o.channel.ring_slots; }},
    {"socket-rx-entries", 1, kMaxU32,
     [](TovmOptions& o) -> std::uint32_t& { return o.channel.socket_rx_entries; }},
    {"chunk-size", 1, kMaxU32,
     [](TovmOptions& o) -> std::uint32_t& { return o.channel.chunk_size; }},
    {"tx-chunks-per-lane", 1, kMaxU32,
     [](TovmOptions& o) -> std::uint32_t& { return o.channel.tx_chunks_per_lane; }},
    {"rx-chunks", 1, kMaxU32, [](TovmOptions& o) -> std::uint32_t& { return o.channel.rx_chunks; }},
};
constexpr int kNumericBase = 2000;

}  // namespace

rpc::Result<TovmCommandLine> parse_tovm_command_line(int argc, char* const argv[]) {
  enum {
    kGuest = 1000,
    kIvshmem,
    kSidecar,
    kStatus,
    kSpinNs,
    kLogLevel,
    kHelp,
    kInspectIvshmem,
    kTopology,
    kAlertLog,
    kWorkers,
    kCpus,
    kVmAgent
  };
  static const std::vector<option> longopts = [] {
    std::vector<option> v = {
        {"guest", required_argument, nullptr, kGuest},
        {"ivshmem", required_argument, nullptr, kIvshmem},
        {"sidecar", required_argument, nullptr, kSidecar},
        {"status", required_argument, nullptr, kStatus},
        {"spin-ns", required_argument, nullptr, kSpinNs},
        {"log-level", required_argument, nullptr, kLogLevel},
        {"help", no_argument, nullptr, kHelp},
        {"inspect-ivshmem", required_argument, nullptr, kInspectIvshmem},
        {"topology", required_argument, nullptr, kTopology},
        {"alert-log", required_argument, nullptr, kAlertLog},
        {"workers", required_argument, nullptr, kWorkers},
        {"cpus", required_argument, nullptr, kCpus},
        {"vm-agent", no_argument, nullptr, kVmAgent},
    };
    for (std::size_t i = 0; i < std::size(kU32Flags); ++i) {
      v.push_back(
          {kU32Flags[i].name, required_argument, nullptr, kNumericBase + static_cast<int>(i)});
    }
    v.push_back({nullptr, 0, nullptr, 0});
    return v;
  }();
  TovmCommandLine cl;
  TovmOptions defaults;  // geometry given before the first --guest; process-wide flags
  std::uint32_t workers = 1;
  // Flags that belong to a guest group: an error before the first --guest.
  auto current = [&](const char* flag) -> rpc::Result<TovmOptions*> {
    if (cl.guests.empty()) {
      return rpc::Error{EINVAL,
                        std::string("--") + flag + " must follow the --guest it belongs to"};
    }
    return &cl.guests.back();
  };
  optind = 0;
  opterr = 0;
  for (;;) {
    const int c = ::getopt_long(argc, argv, "h", longopts.data(), nullptr);
    if (c == -1) break;
    rpc::Status s;
    if (c >= kNumericBase && c < kNumericBase + static_cast<int>(std::size(kU32Flags))) {
      const U32Flag& f = kU32Flags[static_cast<std::size_t>(c - kNumericBase)];
      TovmOptions& target = cl.guests.empty() ? defaults : cl.guests.back();
      s = parse_num(f.name, optarg, f.field(target), f.min, f.max);
      if (!s) return s.error();
      continue;
    }
    // A per-guest string flag: stored into the current group.
    auto set = [&](const char* flag, std::string TovmOptions::*field) -> rpc::Status {
      auto g = current(flag);
      if (!g) return g.error();
      (*g)->*field = optarg;
      return {};
    };
    switch (c) {
      case kGuest: {
        const std::string name = optarg;
        if (name.empty()) return rpc::Error{EINVAL, "--guest: empty name"};
        for (const auto& g : cl.guests) {
          if (g.guest == name) return rpc::Error{EINVAL, "--guest " + name + " given twice"};
        }
        cl.guests.push_back(defaults);
        cl.guests.back().guest = name;
        break;
      }
      case kIvshmem:
        s = set("ivshmem", &TovmOptions::ivshmem);
        break;
      case kSidecar:
        s = set("sidecar", &TovmOptions::sidecar);
        break;
      case kStatus:
        s = set("status", &TovmOptions::status);
        break;
      case kInspectIvshmem:
        s = set("inspect-ivshmem", &TovmOptions::inspect_ivshmem);
        break;
      case kTopology:
        s = set("topology", &TovmOptions::topology);
        break;
      case kAlertLog:
        s = set("alert-log", &TovmOptions::alert_log);
        break;
      case kVmAgent: {
        auto g = current("vm-agent");
        if (!g) return g.error();
        (*g)->vm_agent = true;
        break;
      }
      case kWorkers:
        s = parse_num("workers", optarg, workers, std::uint32_t{1}, std::uint32_t{64});
        break;
      case kCpus: {
        auto cpus = rpc::parse_cpu_list(optarg);
        if (!cpus) return rpc::Error{EINVAL, "--cpus: " + cpus.error().message};
        cl.cpus = std::move(*cpus);
        break;
      }
      case kSpinNs:
        s = parse_num("spin-ns", optarg, defaults.spin_ns, std::int64_t{0},
                      std::int64_t{1'000'000'000});
        break;
      case kLogLevel: {
        const std::string_view v(optarg);
        if (v == "error")
          defaults.log_level = LogLevel::kError;
        else if (v == "info")
          defaults.log_level = LogLevel::kInfo;
        else if (v == "debug")
          defaults.log_level = LogLevel::kDebug;
        else
          s = rpc::Error{EINVAL, "--log-level: invalid value '" + std::string(v) + "'"};
        break;
      }
      case 'h':
      case kHelp:
        cl.help = true;
        break;
      default: {
        const char* bad = (optind > 0 && optind <= argc) ? argv[optind - 1] : "?";
        return rpc::Error{EINVAL, std::string("unknown option or missing argument: ") + bad};
      }
    }
    if (!s) return s.error();
  }
  if (optind < argc) return rpc::Error{EINVAL, std::string("unexpected argument: ") + argv[optind]};
  if (cl.help) return cl;
  if (cl.guests.empty()) return rpc::Error{EINVAL, "--guest is required"};
  cl.workers = workers;
  std::vector<std::string> paths;
  for (auto& g : cl.guests) {
    const std::string who = "--guest " + g.guest + ": ";
    if (g.ivshmem.empty()) return rpc::Error{EINVAL, who + "--ivshmem is required"};
    if (g.sidecar.empty()) return rpc::Error{EINVAL, who + "--sidecar is required"};
    if (g.vm_agent && g.channel.lanes < 2) {
      return rpc::Error{EINVAL,
                        who + "--vm-agent needs --lanes 2 or more (the last is the agent's)"};
    }
    if (g.inspect_ivshmem.empty() != g.topology.empty()) {
      return rpc::Error{EINVAL, who + "--inspect-ivshmem and --topology go together"};
    }
    for (const std::string* p : {&g.ivshmem, &g.sidecar, &g.status}) {
      if (p->empty()) continue;
      if (std::find(paths.begin(), paths.end(), *p) != paths.end()) {
        return rpc::Error{EINVAL, who + "path " + *p + " is used twice"};
      }
      paths.push_back(*p);
    }
    g.workers = workers;
    g.spin_ns = defaults.spin_ns;
    g.log_level = defaults.log_level;
  }
  return cl;
}

rpc::Result<TovmOptions> parse_tovm_options(int argc, char* const argv[]) {
  auto cl = parse_tovm_command_line(argc, argv);
  if (!cl) return cl.error();
  if (cl->help) {
    TovmOptions o;
    o.help = true;
    return o;
  }
  if (cl->guests.size() != 1) {
    return rpc::Error{EINVAL, "expected one --guest, got " + std::to_string(cl->guests.size())};
  }
  return cl->guests.front();
}

}  // namespace tosec::tovm
