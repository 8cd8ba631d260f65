// tosec-channel-pingpong: two process peers exchanging messages through a region served by
// tosec-ivshmem-server, reporting one-hop latency next to the doorbell-only floor.
//
//   tosec-ivshmem-server -F -S /tmp/s.sock -M tosec-demo -l 1M -n 1 &
//   tosec-channel-pingpong --socket /tmp/s.sock --role ponger &
//   tosec-channel-pingpong --socket /tmp/s.sock --role pinger --rounds 20000
//
// The ponger formats the region (as a TOVM formats a guest region); the pinger attaches it,
// which validates the layout. Either may start first: each takes the other as a peer that was
// there when it connected, or as the next to join. Phase 1 measures the floor: doorbells alone (one
// eventfd write and one wake-up a hop). Then one phase per notification mode: 64-byte messages
// through the rings with the spin-then-sleep notifier.
#include <getopt.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "pingpong.h"
#include "tosec/rpc/ivshmem_client.h"

using namespace tosec::rpc;
using namespace tosec::eval;

namespace {

struct Options {
  std::string socket = "/tmp/ivshmem_socket";
  std::string role;
  std::uint64_t rounds = 20'000;
  std::vector<std::string> modes = {"sleep", "adaptive", "spin"};
};

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: tosec-channel-pingpong --role pinger|ponger [--socket PATH] "
               "[--rounds N] [--modes sleep,adaptive,spin]\n");
  std::exit(code);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Result<SpinPolicy> policy_for(const std::string& mode) {
  if (mode == "sleep") return SpinPolicy::sleep_only();
  if (mode == "adaptive") return SpinPolicy{};
  if (mode == "spin") return SpinPolicy::spin_only();
  return Error{EINVAL, "unknown mode '" + mode + "' (expected sleep, adaptive or spin)"};
}

int fail(const char* who, const Error& e) {
  std::fprintf(stderr, "tosec-channel-pingpong (%s): %s\n", who, e.message.c_str());
  return 1;
}

// Attaches the region, retrying while the ponger is still formatting it.
Result<RegionView> attach_when_ready(const ShmMapping& map) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);  // as long as first_peer waits
  for (;;) {
    auto v = RegionView::attach(map.bytes());
    if (v || (v.error().code != EAGAIN && v.error().code != EPROTO) ||
        std::chrono::steady_clock::now() > deadline) {
      return v;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void print_row(const char* mode, const Summary& s, double floor_mean, double floor_p50) {
  std::printf("%-10s %9.0f %9.0f %9.0f %9.0f   %5.2fx  %5.2fx\n", mode, s.mean_ns / 2, s.p50_ns / 2,
              s.p90_ns / 2, s.p99_ns / 2, floor_mean > 0 ? s.mean_ns / floor_mean : 1.0,
              floor_p50 > 0 ? s.p50_ns / floor_p50 : 1.0);
}

// The other side: one that was there when we connected, or the next to join (either may start
// first; the ponger formats the region, the pinger waits for that).
Result<PeerId> first_peer(IvshmemClient& client) {
  if (auto peers = client.peers(); !peers.empty()) return peers.front();
  return client.wait_for_peer(std::nullopt, 30'000);
}

int run(const Options& o) {
  const bool pinger = o.role == "pinger";
  const char* who = pinger ? "pinger" : "ponger";
  IvshmemClient client;
  if (auto s = client.connect(o.socket); !s) return fail(who, s.error());

  Result<RegionView> view = Error{};
  PeerId peer = 0;
  if (pinger) {
    view = attach_when_ready(client.region());
    if (!view) return fail(who, view.error());
    auto p = first_peer(client);
    if (!p) return fail(who, p.error());
    peer = *p;
  } else {
    auto layout = pingpong_layout();
    if (auto s = layout.format(client.region().bytes()); !s) return fail(who, s.error());
    view = RegionView::attach(client.region().bytes());
    if (!view) return fail(who, view.error());
    auto p = first_peer(client);
    if (!p) return fail(who, p.error());
    peer = *p;
  }
  (void)view->claim_peer(client.self_id(), PeerRole::kTest, who,
                         static_cast<std::uint32_t>(::getpid()));

  auto end = attach_end(*view, pinger);
  if (!end) return fail(who, end.error());
  end->ringer = &client.doorbells();
  end->waiter = &client.doorbells();
  end->peer = peer;
  end->peer_vector = 0;
  end->own_vector = 0;

  // Phase 1: the floor.
  Summary floor{};
  if (pinger) {
    std::printf("region: %zu bytes, generation %llu; ivshmem peers: pinger %u, ponger %u\n",
                view->bytes().size(), static_cast<unsigned long long>(view->generation()),
                client.self_id(), peer);
    auto rtt = doorbell_ping(*end, o.rounds);
    if (!rtt) return fail(who, rtt.error());
    floor = summarize(std::move(*rtt));
    std::printf("\none hop, ns (%llu round trips each; ratio = mode / doorbell floor)\n",
                static_cast<unsigned long long>(o.rounds));
    std::printf("%-10s %9s %9s %9s %9s   %6s  %6s\n", "mode", "mean", "p50", "p90", "p99", "mean",
                "p50");
    print_row("floor", floor, floor.mean_ns, floor.p50_ns);
  } else if (auto s = doorbell_pong(*end, o.rounds); !s) {
    return fail(who, s.error());
  }

  // Phases 2..: the rings with each notification mode.
  for (const auto& mode : o.modes) {
    auto policy = policy_for(mode);
    if (!policy) return fail(who, policy.error());
    end->policy = *policy;
    if (pinger) {
      auto rtt = ping(*end, o.rounds);
      if (!rtt) return fail(who, rtt.error());
      if (auto s = stop_ponger(*end); !s) return fail(who, s.error());
      print_row(mode.c_str(), summarize(std::move(*rtt)), floor.mean_ns, floor.p50_ns);
    } else if (auto s = pong(*end, UINT64_MAX); !s) {
      return fail(who, s.error());
    }
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  static const option longopts[] = {
      {"socket", required_argument, nullptr, 's'}, {"role", required_argument, nullptr, 'r'},
      {"rounds", required_argument, nullptr, 'n'}, {"modes", required_argument, nullptr, 'm'},
      {"help", no_argument, nullptr, 'h'},         {nullptr, 0, nullptr, 0}};
  for (int c; (c = ::getopt_long(argc, argv, "s:r:n:m:h", longopts, nullptr)) != -1;) {
    switch (c) {
      case 's':
        o.socket = optarg;
        break;
      case 'r':
        o.role = optarg;
        break;
      case 'n': {
        char* end = nullptr;
        o.rounds = std::strtoull(optarg, &end, 10);
        if (end == optarg || *end != '\0' || o.rounds == 0) {
          std::fprintf(stderr, "tosec-channel-pingpong: --rounds '%s' is not a positive number\n",
                       optarg);
          return 2;
        }
        break;
      }
      case 'm':
        o.modes = split(optarg);
        break;
      case 'h':
        usage(0);
      default:
        usage(2);
    }
  }
  if (o.role != "pinger" && o.role != "ponger") {
    std::fprintf(stderr, "tosec-channel-pingpong: --role must be pinger or ponger\n");
    usage(2);
  }
  for (const auto& m : o.modes) {
    if (!policy_for(m)) {
      std::fprintf(stderr, "tosec-channel-pingpong: %s\n", policy_for(m).error().message.c_str());
      return 2;
    }
  }
  return run(o);
}
