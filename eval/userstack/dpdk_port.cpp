#include "dpdk_port.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "tosec/rpc/cpu_list.h"

namespace tosec::eval {
namespace {
constexpr std::uint16_t kPortId = 0;
constexpr std::uint16_t kRingSize = 512;

// "--lcores=0@(CPUS)": DPDK would otherwise pin the main thread to the first CPU; the probe
// should be scheduled like the programs it is compared with.
std::string lcores_anywhere() {
  const std::string cpus = rpc::format_cpu_list(rpc::thread_cpus());  // "0-1": DPDK's syntax too
  return "--lcores=0@(" + (cpus.empty() ? std::string("0") : cpus) + ")";
}
}  // namespace

std::string DpdkPort::open(const std::string& iface) {
  // qdisc_bypass: frames go straight to the driver, as a NIC queue would. --no-huge keeps the
  // probe off hugetlbfs (legacy memory, so no --in-memory); the file prefix keeps two probes from
  // sharing /var/run/dpdk state; the main lcore may run on either CPU.
  const std::string vdev = "--vdev=net_af_packet0,iface=" + iface +
                           ",qpairs=1,blocksz=4096,framesz=2048,framecnt=512,qdisc_bypass=1";
  const std::string prefix = "--file-prefix=tosec-userstack-" + std::to_string(::getpid());
  std::vector<std::string> args = {"tosec-userstack",
                                   "--no-huge",
                                   "-m",
                                   "128",
                                   "--no-pci",
                                   "--no-telemetry",
                                   lcores_anywhere(),
                                   prefix,
                                   "--log-level=*:warning",
                                   vdev};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0)
    return std::string("rte_eal_init: ") + rte_strerror(rte_errno);
  if (rte_eth_dev_count_avail() == 0) return "no DPDK port on interface " + iface;
  auto* pool =
      rte_pktmbuf_pool_create("userstack", 4095, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (pool == nullptr) return std::string("mbuf pool: ") + rte_strerror(rte_errno);
  pool_ = pool;
  rte_eth_conf conf{};
  int rc = rte_eth_dev_configure(kPortId, 1, 1, &conf);
  if (rc == 0) rc = rte_eth_rx_queue_setup(kPortId, 0, kRingSize, rte_socket_id(), nullptr, pool);
  if (rc == 0) rc = rte_eth_tx_queue_setup(kPortId, 0, kRingSize, rte_socket_id(), nullptr);
  if (rc == 0) rc = rte_eth_dev_start(kPortId);
  if (rc != 0) return "port on " + iface + ": " + rte_strerror(-rc);
  started_ = true;
  rte_ether_addr a;
  rte_eth_macaddr_get(kPortId, &a);
  std::memcpy(mac_, a.addr_bytes, sizeof mac_);
  return "";
}

void DpdkPort::close() {
  (void)flush();
  if (started_) {
    rte_eth_dev_stop(kPortId);
    rte_eth_dev_close(kPortId);
    started_ = false;
  }
  rte_eal_cleanup();
}

std::uint16_t DpdkPort::receive(void (*fn)(const void*, std::uint16_t, void*), void* arg) {
  rte_mbuf* burst[32];
  const std::uint16_t n = rte_eth_rx_burst(kPortId, 0, burst, 32);
  for (std::uint16_t i = 0; i < n; ++i) {
    fn(rte_pktmbuf_mtod(burst[i], const void*),
       static_cast<std::uint16_t>(rte_pktmbuf_pkt_len(burst[i])), arg);
    rte_pktmbuf_free(burst[i]);
  }
  return n;
}

bool DpdkPort::queue_frame(std::uint16_t len, void (*fill)(void*, void*), void* arg) {
  if (queued_ == kBatch) flush();
  rte_mbuf* m = rte_pktmbuf_alloc(static_cast<rte_mempool*>(pool_));
  if (m == nullptr) return false;
  char* dst = rte_pktmbuf_append(m, len);
  if (dst == nullptr) {
    rte_pktmbuf_free(m);
    return false;
  }
  fill(dst, arg);
  batch_[queued_++] = m;
  return true;
}

int DpdkPort::flush() {
  auto** frames = reinterpret_cast<rte_mbuf**>(batch_);
  int sent = 0;
  // af_packet takes what fits in its TX ring and the kernel drains it at once; a ring that stays
  // full (link down) drops the rest, as a NIC would: TCP retransmits.
  for (int tries = 0; sent < queued_ && tries < 1000; ++tries)
    sent += rte_eth_tx_burst(kPortId, 0, frames + sent, static_cast<std::uint16_t>(queued_ - sent));
  for (int i = sent; i < queued_; ++i) rte_pktmbuf_free(frames[i]);
  queued_ = 0;
  return sent;
}

}  // namespace tosec::eval
