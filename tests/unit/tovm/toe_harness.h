// An in-process TOE for the tests: an ivshmem server thread sized for the channel config, and a
// tosec::tovm::Worker running its loop on a thread. Counters are read the way an operator reads
// them: through the --status socket.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "ivshmem_test_support.h"
#include "tosec/rpc/guest_channel.h"
#include "tosec/tovm/worker.h"

namespace tosec::tovm::test {

inline rpc::GuestChannelConfig small_config() {
  rpc::GuestChannelConfig c;
  c.lanes = 4;
  c.ring_slots = 64;
  c.max_sockets = 32;
  c.socket_rx_entries = 16;
  c.chunk_size = 4096;
  c.tx_chunks_per_lane = 16;
  c.rx_chunks = 64;
  return c;
}

class ToeHarness {
 public:
  // `customize` adjusts the options before the worker is created (inspection, ...); `vectors`
  // is the server's -n (VM mode needs one per lane).
  explicit ToeHarness(rpc::GuestChannelConfig cfg = small_config(),
                      const std::function<void(TovmOptions&)>& customize = {}, unsigned vectors = 1)
      : ivs_(host::IvshmemServerConfig{dir_.file("ivs.sock"), vectors},
             rpc::guest_region_layout(cfg).pow2_size()) {
    if (!ivs_.ok()) {
      error_ = "ivshmem server: " + ivs_.error();
      return;
    }
    opts_.guest = "test";
    opts_.ivshmem = dir_.file("ivs.sock");
    opts_.sidecar = dir_.file("side.sock");
    opts_.status = dir_.file("status.sock");
    opts_.channel = cfg;
    opts_.log_level = LogLevel::kError;
    if (customize) customize(opts_);
    auto w = Worker::create(opts_, false);
    if (!w) {
      error_ = "worker: " + w.error().message;
      return;
    }
    worker_ = std::move(*w);
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        if (paused_.load()) {
          parked_.store(true);
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        worker_->run_once(50);
      }
    });
  }
  ~ToeHarness() {
    stop_.store(true);
    if (worker_) worker_->request_stop();
    if (thread_.joinable()) thread_.join();
    worker_.reset();
  }
  // Holds the worker between two iterations, for tests that queue requests the TOE must not
  // see yet (returns once it is held; up to one 50 ms sleep later); resume() lets it go on.
  void pause() {
    parked_.store(false);
    paused_.store(true);
    while (!parked_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  void resume() { paused_.store(false); }
  bool ok() const { return worker_ != nullptr; }
  const std::string& error() const { return error_; }
  const TovmOptions& options() const { return opts_; }
  Worker& worker() { return *worker_; }
  std::string file(const std::string& name) const { return dir_.file(name); }

  std::string status() const {
    rpc::UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, opts_.status.c_str(), sizeof sun.sun_path - 1);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) return {};
    std::string out;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
  // A top-level or "sockets" counter from the status JSON; -1 if absent.
  std::int64_t stat(const std::string& name) const { return stat_in(status(), name); }
  static std::int64_t stat_in(const std::string& json, const std::string& name) {
    const auto pos = json.find("\"" + name + "\":");
    if (pos == std::string::npos) return -1;
    return std::stoll(json.substr(pos + name.size() + 3));
  }

 private:
  tosec::test::TempDir dir_;
  tosec::test::ServerThread ivs_;
  TovmOptions opts_;
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  std::atomic<bool> parked_{false};
  std::string error_;
};

}  // namespace tosec::tovm::test
