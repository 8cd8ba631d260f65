// NFV baseline: a TCP-terminating Layer-7 proxy that inspects every payload with a TOSEC engine.
//
// This is the paper's NFV security VM (cases 2B/2C/3B/3C, docs/evaluation/paper.md) as a process:
// it accepts a connection on a listen address, opens its own connection to a configured next hop
// (the next proxy or the peer), and relays the byte stream both ways through the kernel TCP/IP
// stack, so each proxy in a chain costs one full stack traversal per direction and hop. Every
// chunk read from either side goes through the same Engine -> EngineThread -> StreamInspector
// path that tosec-svm uses (svm_runtime/include/tosec/svm/inspector.h), in stream order, before
// a byte of it is forwarded; a block verdict resets both connections (SO_LINGER 0: the peers get
// RST, like TOSEC's block).
//
// Threading: one thread, one epoll set, non-blocking sockets (one SVM worker's worth of CPU).
// Back-pressure: at most one read buffer per direction is in flight; while it is not fully
// written to the other side, that direction is not read.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tosec/rpc/status.h"
#include "tosec/svm/alert_log.h"
#include "tosec/svm/inspector.h"

namespace tosec::eval {

// "ADDR:PORT" (IPv4) or "[ADDR]:PORT" (IPv6), numeric only; port 0 allowed for listen addresses.
struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string text() const;
};
rpc::Result<SockAddr> parse_sockaddr(const std::string& text, bool allow_port0);

struct Forward {
  SockAddr listen;
  SockAddr next_hop;
};

struct ProxyOptions {
  std::vector<Forward> forwards;
  std::string name = "nfv";       // instance name (alerts, logs)
  std::string guest = "default";  // StreamInfo::guest of every stream (ACL rules match it)
  bool detect_only = false;       // blocks become alerts
  std::size_t buffer_bytes = 65536;
};

struct ProxyStats {
  std::uint64_t connections = 0;
  std::uint64_t bytes_to_server = 0;
  std::uint64_t bytes_to_client = 0;
  std::uint64_t payloads = 0;
  std::uint64_t blocked = 0;
  std::uint64_t alerts = 0;
  std::uint64_t connect_failures = 0;
};

class Proxy {
 public:
  // engine may be null: a plain relay (no inspection). engine and alerts must outlive the Proxy.
  static rpc::Result<std::unique_ptr<Proxy>> create(ProxyOptions options, svm::Engine* engine,
                                                    svm::AlertLog* alerts);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // The bound listen addresses (with the kernel's port for a port-0 request), in --forward order.
  std::vector<SockAddr> bound() const;
  // Serves until SIGTERM or SIGINT (which the caller has blocked) arrives.
  rpc::Status run();
  const ProxyStats& stats() const { return stats_; }

 private:
  struct Conn;
  struct Side;
  Proxy() = default;
  void accept_all(std::size_t forward);
  void handle(Conn& c, bool client_side, std::uint32_t events);
  void pump(Conn& c, bool from_client);
  bool flush(Conn& c, bool to_client);
  void rearm(Conn& c);
  void maybe_finish(Conn& c);
  void reset(Conn& c);
  void close_conn(Conn& c);
  bool apply(Conn& c, const svm::Verdict& v, svm::Direction d);

  ProxyOptions opt_;
  svm::Engine* engine_ = nullptr;
  svm::AlertLog* alerts_ = nullptr;
  std::unique_ptr<svm::EngineThread> thread_;
  int epoll_ = -1;
  int signal_fd_ = -1;
  std::vector<int> listeners_;
  std::vector<SockAddr> bound_;
  std::vector<std::unique_ptr<Conn>> conns_;  // index = connection slot (epoll token / 2)
  std::vector<std::size_t> free_slots_;
  std::uint64_t next_stream_id_ = 1;
  ProxyStats stats_;
};

}  // namespace tosec::eval
