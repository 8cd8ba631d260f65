// tosec-ivshmem-probe: inspects and exercises an ivshmem-doorbell device from inside a VM
// (docs/ivshmem-protocol.md, "Inside a VM"). Output is one "key: value" fact per line so that
// scripts and tests can grep it. Actions run in command-line order.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tosec/rpc/ivshmem_pci.h"

namespace {

using namespace tosec::rpc;

constexpr const char* kUsage =
    "usage: tosec-ivshmem-probe [--sysfs DIR] [--dev DIR] [--bdf BDF | --index N] [--vectors N]\n"
    "                           [--backend auto|vfio|uio|poll] [--list] [ACTION...]\n"
    "actions, run in order:\n"
    "  --write OFF:TEXT          write TEXT into the region at byte offset OFF\n"
    "  --read OFF:LEN            print LEN bytes of the region at OFF\n"
    "  --await OFF:TEXT:MS       poll the region until TEXT is at OFF (exit 1 after MS ms)\n"
    "  --ring PEER:VECTOR        write the Doorbell register\n"
    "  --wait VECTOR:MS          wait for an interrupt on VECTOR (prints rung or timeout)\n"
    "exit status: 0 ok, 1 an action failed or timed out, 2 usage or device error\n";

struct Action {
  std::string kind;
  std::string arg;
};

int usage(const std::string& why) {
  std::fprintf(stderr, "tosec-ivshmem-probe: %s\n%s", why.c_str(), kUsage);
  return 2;
}

// Splits "a:b[:c]" into exactly `n` fields (the last one keeps any further colons).
bool split(const std::string& s, std::size_t n, std::vector<std::string>& out) {
  out.clear();
  std::size_t pos = 0;
  for (std::size_t i = 0; i + 1 < n; ++i) {
    const auto c = s.find(':', pos);
    if (c == std::string::npos) return false;
    out.push_back(s.substr(pos, c - pos));
    pos = c + 1;
  }
  out.push_back(s.substr(pos));
  return true;
}

bool to_u64(const std::string& s, std::uint64_t& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  v = std::strtoull(s.c_str(), &end, 0);
  return errno == 0 && end != nullptr && *end == '\0' && s[0] != '-';
}

bool in_region(const IvshmemPci& pci, std::uint64_t off, std::uint64_t len) {
  return off <= pci.region().size() && len <= pci.region().size() - off;
}

// Runs one action; returns the exit status contribution (0 ok, 1 failed, 2 bad argument).
int run(IvshmemPci& pci, const Action& a) {
  std::vector<std::string> f;
  std::uint64_t x = 0, y = 0;
  auto* base = reinterpret_cast<volatile char*>(pci.region().data());
  if (a.kind == "--write") {
    if (!split(a.arg, 2, f) || !to_u64(f[0], x)) return usage("--write wants OFF:TEXT");
    if (!in_region(pci, x, f[1].size())) return usage("--write: outside the region");
    for (std::size_t i = 0; i < f[1].size(); ++i) base[x + i] = f[1][i];
    std::printf("write %llu: %s\n", static_cast<unsigned long long>(x), f[1].c_str());
  } else if (a.kind == "--read") {
    if (!split(a.arg, 2, f) || !to_u64(f[0], x) || !to_u64(f[1], y)) {
      return usage("--read wants OFF:LEN");
    }
    if (!in_region(pci, x, y)) return usage("--read: outside the region");
    std::string s;
    for (std::uint64_t i = 0; i < y; ++i) {
      const char c = base[x + i];
      s += (c >= 32 && c < 127) ? c : '.';
    }
    std::printf("read %llu: %s\n", static_cast<unsigned long long>(x), s.c_str());
  } else if (a.kind == "--await") {
    if (!split(a.arg, 3, f) || !to_u64(f[0], x) || !to_u64(f[2], y)) {
      return usage("--await wants OFF:TEXT:MS");
    }
    if (!in_region(pci, x, f[1].size())) return usage("--await: outside the region");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(y);
    for (;;) {
      bool same = true;
      for (std::size_t i = 0; i < f[1].size() && same; ++i) same = base[x + i] == f[1][i];
      if (same) break;
      if (std::chrono::steady_clock::now() > deadline) {
        std::printf("await %llu: timeout\n", static_cast<unsigned long long>(x));
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::printf("await %llu: %s\n", static_cast<unsigned long long>(x), f[1].c_str());
  } else if (a.kind == "--ring") {
    if (!split(a.arg, 2, f) || !to_u64(f[0], x) || !to_u64(f[1], y) || x > 0xffff || y > 0xff) {
      return usage("--ring wants PEER:VECTOR (PEER < 65536, VECTOR < 256)");
    }
    if (auto s = pci.ring(static_cast<PeerId>(x), static_cast<Vector>(y)); !s) {
      std::printf("ring %llu:%llu: error %s\n", static_cast<unsigned long long>(x),
                  static_cast<unsigned long long>(y), s.message().c_str());
      return 1;
    }
    std::printf("ring %llu:%llu: ok\n", static_cast<unsigned long long>(x),
                static_cast<unsigned long long>(y));
  } else if (a.kind == "--wait") {
    if (!split(a.arg, 2, f) || !to_u64(f[0], x) || !to_u64(f[1], y) || x > 0xff) {
      return usage("--wait wants VECTOR:MS");
    }
    auto r = pci.wait(static_cast<Vector>(x), static_cast<std::int64_t>(y) * 1'000'000);
    if (!r) {
      std::printf("wait %llu: error %s\n", static_cast<unsigned long long>(x),
                  r.error().message.c_str());
      return 1;
    }
    // With the poll backend `true` only means "maybe": say so.
    const char* what = !*r                                         ? "timeout"
                       : pci.backend() == IvshmemIrqBackend::kPoll ? "poll-interval"
                                                                   : "rung";
    std::printf("wait %llu: %s\n", static_cast<unsigned long long>(x), what);
    if (!*r) return 1;
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  IvshmemSelector sel;
  IvshmemPciOptions opt;
  bool list = false;
  std::vector<Action> actions;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](std::string& v) {
      if (i + 1 >= argc) return false;
      v = argv[++i];
      return true;
    };
    std::string v;
    std::uint64_t n = 0;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--list") {
      list = true;
    } else if (a == "--sysfs" && next(v)) {
      sel.sysfs_root = opt.sysfs_root = v;
    } else if (a == "--dev" && next(v)) {
      opt.dev_root = v;
    } else if (a == "--bdf" && next(v)) {
      sel.bdf = v;
    } else if (a == "--index" && next(v) && to_u64(v, n)) {
      sel.index = static_cast<unsigned>(n);
    } else if (a == "--vectors" && next(v) && to_u64(v, n) && n >= 1 && n <= 256) {
      opt.vectors = static_cast<unsigned>(n);
    } else if (a == "--backend" && next(v)) {
      auto b = parse_irq_backend(v);
      if (!b) return usage("unknown backend '" + v + "'");
      opt.backend = *b;
    } else if ((a == "--write" || a == "--read" || a == "--await" || a == "--ring" ||
                a == "--wait") &&
               next(v)) {
      actions.push_back({a, v});
    } else {
      return usage("bad or incomplete argument '" + a + "'");
    }
  }
  if (list) {
    auto all = find_ivshmem_devices(sel.sysfs_root);
    if (!all) {
      std::fprintf(stderr, "tosec-ivshmem-probe: %s\n", all.error().message.c_str());
      return 2;
    }
    for (const auto& d : *all) {
      std::printf("device %s: bar0 %llu bar2 %llu driver %s\n", d.bdf.c_str(),
                  static_cast<unsigned long long>(d.bar0_size),
                  static_cast<unsigned long long>(d.bar2_size),
                  d.driver.empty() ? "none" : d.driver.c_str());
    }
    if (actions.empty()) return 0;
  }
  auto dev = select_ivshmem_device(sel);
  if (!dev) {
    std::fprintf(stderr, "tosec-ivshmem-probe: %s\n", dev.error().message.c_str());
    return 2;
  }
  auto pci = IvshmemPci::open(*dev, opt);
  if (!pci) {
    std::fprintf(stderr, "tosec-ivshmem-probe: %s\n", pci.error().message.c_str());
    return 2;
  }
  std::printf("device: %s\nregion: %zu\nivposition: %u\nbackend: %s\n", dev->bdf.c_str(),
              pci->region().size(), static_cast<unsigned>(pci->self()), to_string(pci->backend()));
  if (!pci->backend_detail().empty())
    std::printf("backend-detail: %s\n", pci->backend_detail().c_str());
  if (!pci->fallback_reason().empty()) {
    std::printf("fallback: %s\n", pci->fallback_reason().c_str());
  }
  std::fflush(stdout);
  for (const auto& a : actions) {
    if (int rc = run(*pci, a); rc != 0) return rc;
  }
  return 0;
}
