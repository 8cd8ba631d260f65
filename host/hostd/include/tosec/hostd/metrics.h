// Prometheus metrics of tosec-hostd (text exposition format 0.0.4, docs/control-plane.md
// "Metrics"), served on [host] metrics_listen by a minimal HTTP/1.0 server (GET /metrics).
//
// render_metrics() turns what hostd knows into the exposition text: the TOEs' status objects
// (fields absent from a TOE's JSON are left out, never faked: the "metrics" object of the
// contract with the TOE may be missing) and the supervisor's roles.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tosec/cli/status.h"
#include "tosec/hostd/supervisor.h"
#include "tosec/rpc/status.h"

namespace tosec::hostd {

std::string render_metrics(const std::vector<cli::GuestStatus>& guests,
                           const std::vector<RoleInfo>& roles, std::uint64_t generation);

// One thread, one connection at a time (scrapes are rare and small); answers GET /metrics with
// render(), anything else with 404. Loopback or a configured address only.
class MetricsServer {
 public:
  ~MetricsServer() { stop(); }
  // address: "IP:PORT" (port 0: any free one; bound_address() tells which).
  rpc::Status start(const std::string& address, std::function<std::string()> render);
  void stop();
  const std::string& bound_address() const { return bound_; }

 private:
  void serve();
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd that wakes serve() to exit
  std::string bound_;
  std::function<std::string()> render_;
  std::thread thread_;
};

}  // namespace tosec::hostd
