#include "tosec/tovm/options.h"

#include <getopt.h>

#include <charconv>
#include <string_view>

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
         "TCP offload engine for one guest (docs/tovm.md).\n";
}

rpc::Result<TovmOptions> parse_tovm_options(int argc, char* const argv[]) {
  enum {
    kGuest = 1000,
    kIvshmem,
    kSidecar,
    kStatus,
    kLanes,
    kMaxSockets,
    kRingSlots,
    kRxEntries,
    kChunkSize,
    kTxChunks,
    kRxChunks,
    kWorkers,
    kSpinNs,
    kLogLevel,
    kHelp
  };
  static const option longopts[] = {
      {"guest", required_argument, nullptr, kGuest},
      {"ivshmem", required_argument, nullptr, kIvshmem},
      {"sidecar", required_argument, nullptr, kSidecar},
      {"status", required_argument, nullptr, kStatus},
      {"lanes", required_argument, nullptr, kLanes},
      {"max-sockets", required_argument, nullptr, kMaxSockets},
      {"ring-slots", required_argument, nullptr, kRingSlots},
      {"socket-rx-entries", required_argument, nullptr, kRxEntries},
      {"chunk-size", required_argument, nullptr, kChunkSize},
      {"tx-chunks-per-lane", required_argument, nullptr, kTxChunks},
      {"rx-chunks", required_argument, nullptr, kRxChunks},
      {"workers", required_argument, nullptr, kWorkers},
      {"spin-ns", required_argument, nullptr, kSpinNs},
      {"log-level", required_argument, nullptr, kLogLevel},
      {"help", no_argument, nullptr, kHelp},
      {nullptr, 0, nullptr, 0},
  };
  TovmOptions o;
  optind = 0;
  opterr = 0;
  constexpr std::uint32_t kMaxU32 = 0xFFFFFFFFU;
  for (;;) {
    const int c = ::getopt_long(argc, argv, "h", longopts, nullptr);
    if (c == -1) break;
    rpc::Status s;
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
      case kLanes:
        s = parse_num("lanes", optarg, o.channel.lanes, 1U, kMaxU32);
        break;
      case kMaxSockets:
        s = parse_num("max-sockets", optarg, o.channel.max_sockets, 1U, kMaxU32);
        break;
      case kRingSlots:
        s = parse_num("ring-slots", optarg, o.channel.ring_slots, 1U, kMaxU32);
        break;
      case kRxEntries:
        s = parse_num("socket-rx-entries", optarg, o.channel.socket_rx_entries, 1U, kMaxU32);
        break;
      case kChunkSize:
        s = parse_num("chunk-size", optarg, o.channel.chunk_size, 1U, kMaxU32);
        break;
      case kTxChunks:
        s = parse_num("tx-chunks-per-lane", optarg, o.channel.tx_chunks_per_lane, 1U, kMaxU32);
        break;
      case kRxChunks:
        s = parse_num("rx-chunks", optarg, o.channel.rx_chunks, 1U, kMaxU32);
        break;
      case kWorkers:
        s = parse_num("workers", optarg, o.workers, 1U, 64U);
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
  return o;
}

}  // namespace tosec::tovm
