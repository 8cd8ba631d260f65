// One DPDK ethdev on a net_af_packet vdev (a Linux interface such as a veth end), for the
// user-space stack probe. DPDK lives in its own translation unit: its headers and lwIP's both
// define struct ip6_hdr, so nothing here includes either.
#pragma once

#include <cstdint>
#include <string>

namespace tosec::eval {

class DpdkPort {
 public:
  // Starts the EAL (no hugepages, no PCI) and port 0 on `iface`, one RX and one TX queue.
  // Returns "" on success, else what failed.
  std::string open(const std::string& iface);
  void close();

  const std::uint8_t* mac() const { return mac_; }

  // Calls fn(frame, len, arg) for each received frame, at most one burst (32); returns how many.
  std::uint16_t receive(void (*fn)(const void* frame, std::uint16_t len, void* arg), void* arg);

  // Appends one frame of `len` bytes, written by fill(dst, arg), to the TX batch; false when no
  // buffer is free. flush() hands the batch to the port (one sendto() for af_packet) and returns
  // how many frames it held.
  bool queue_frame(std::uint16_t len, void (*fill)(void* dst, void* arg), void* arg);
  int flush();

 private:
  static constexpr int kBatch = 64;
  void* pool_ = nullptr;      // rte_mempool*
  void* batch_[kBatch] = {};  // rte_mbuf*
  int queued_ = 0;
  bool started_ = false;
  std::uint8_t mac_[6] = {};
};

}  // namespace tosec::eval
