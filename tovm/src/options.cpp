#include "tosec/tovm/options.h"

#include <getopt.h>

#include <charconv>
#include <iterator>
#include <string_view>
#include <vector>

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
         " --guest NAME --ivshmem SOCKET --sidecar PATH [--status PATH]\n"
         "       [--lanes N] [--max-sockets N] [--ring-slots N] [--socket-rx-entries N]\n"
         "       [--chunk-size N] [--tx-chunks-per-lane N] [--rx-chunks N] [--workers N]\n"
         "       [--spin-ns N] [--log-level error|info|debug]\n"
         "       [--inspect-ivshmem SOCKET --topology FILE [--alert-log FILE]]\n"
         "TCP offload engine for one guest (docs/tovm.md); with --inspect-ivshmem its streams\n"
         "go through the SVM chains the topology selects (docs/svm.md).\n";
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
    {"workers", 1, 64, [](TovmOptions& o) -> std::uint32_t& { return o.workers; }},
};
constexpr int kNumericBase = 2000;

}  // namespace

rpc::Result<TovmOptions> parse_tovm_options(int argc, char* const argv[]) {
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
    kAlertLog
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
    };
    for (std::size_t i = 0; i < std::size(kU32Flags); ++i) {
      v.push_back(
          {kU32Flags[i].name, required_argument, nullptr, kNumericBase + static_cast<int>(i)});
    }
    v.push_back({nullptr, 0, nullptr, 0});
    return v;
  }();
  TovmOptions o;
  optind = 0;
  opterr = 0;
  for (;;) {
    const int c = ::getopt_long(argc, argv, "h", longopts.data(), nullptr);
    if (c == -1) break;
    rpc::Status s;
    if (c >= kNumericBase && c < kNumericBase + static_cast<int>(std::size(kU32Flags))) {
      const U32Flag& f = kU32Flags[static_cast<std::size_t>(c - kNumericBase)];
      s = parse_num(f.name, optarg, f.field(o), f.min, f.max);
      if (!s) return s.error();
      continue;
    }
    switch (c) {
      case kGuest:
        o.guest = optarg;
        break;
      case kIvshmem:
        o.ivshmem = optarg;
        break;
      case kSidecar:
        o.sidecar = optarg;
        break;
      case kStatus:
        o.status = optarg;
        break;
      case kInspectIvshmem:
        o.inspect_ivshmem = optarg;
        break;
      case kTopology:
        o.topology = optarg;
        break;
      case kAlertLog:
        o.alert_log = optarg;
        break;
      case kSpinNs:
        s = parse_num("spin-ns", optarg, o.spin_ns, std::int64_t{0}, std::int64_t{1'000'000'000});
        break;
      case kLogLevel: {
        const std::string_view v(optarg);
        if (v == "error")
          o.log_level = LogLevel::kError;
        else if (v == "info")
          o.log_level = LogLevel::kInfo;
        else if (v == "debug")
          o.log_level = LogLevel::kDebug;
        else
          s = rpc::Error{EINVAL, "--log-level: invalid value '" + std::string(v) + "'"};
        break;
      }
      case 'h':
      case kHelp:
        o.help = true;
        break;
      default: {
        const char* bad = (optind > 0 && optind <= argc) ? argv[optind - 1] : "?";
        return rpc::Error{EINVAL, std::string("unknown option or missing argument: ") + bad};
      }
    }
    if (!s) return s.error();
  }
  if (optind < argc) return rpc::Error{EINVAL, std::string("unexpected argument: ") + argv[optind]};
  if (o.help) return o;
  if (o.guest.empty()) return rpc::Error{EINVAL, "--guest is required"};
  if (o.ivshmem.empty()) return rpc::Error{EINVAL, "--ivshmem is required"};
  if (o.sidecar.empty()) return rpc::Error{EINVAL, "--sidecar is required"};
  if (o.inspect_ivshmem.empty() != o.topology.empty()) {
    return rpc::Error{EINVAL, "--inspect-ivshmem and --topology go together"};
  }
  return o;
}

}  // namespace tosec::tovm
