// The inspector plugin API: how an engine (IDS, WAF, AV, ACL, or yours) plugs into an SVM.
//
// Modelled on Envoy's filter factories and Snort 3's inspectors, with three lifetimes:
//
//   Engine          one per SVM process. Built once from EngineConfig (rules compiled here, errors
//                   name the file and line). Immutable afterwards and shared by all worker threads.
//   EngineThread    one per worker thread: the per-thread state an engine needs (Hyperscan
//                   scratch, a ModSecurity transaction pool, ...). Never shared between threads.
//   StreamInspector one per stream (one TCP connection of one guest, both directions), created by
//                   the EngineThread of the worker that owns the stream and used only on it.
//
// The runtime guarantees, so engines need not check:
//   * inspect() sees each direction's bytes exactly once, in stream order, with no gap: the
//     stream_offset of a payload is the sum of the sizes of the earlier payloads of that direction.
//   * the payload bytes stay valid and unchanged only for the duration of inspect(). An engine
//     that needs context across payloads (a split pattern, an HTTP body) keeps its own state or
//     copy; bytes live in the inspection region and are read in place (no copy by the runtime).
//   * finish() is called once, when the stream ends (FIN/RST/close) or is torn down, unless the
//     stream was already blocked.
//
// The hot path must not allocate when nothing matches: Verdict::findings stays empty on pass.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/status.h"

namespace tosec::svm {

// Which way a payload travels, seen from the guest.
enum class Direction : std::uint8_t {
  kOutbound = 0,  // guest -> TOE -> wire
  kInbound = 1,   // wire -> TOE -> guest
};

// Which way a payload travels, seen from the connection's roles (Suricata's flow:to_server /
// to_client). Derived from Direction and who opened the connection.
enum class Flow : std::uint8_t {
  kToServer = 0,
  kToClient = 1,
};

// Addresses in network byte order; IPv4 uses the first 4 bytes of addr (family says which).
struct Endpoint {
  std::uint8_t family = 0;  // AF_INET or AF_INET6
  std::uint8_t addr[16] = {};
  std::uint16_t port = 0;  // host byte order
};

struct StreamInfo {
  std::uint64_t stream_id = 0;  // unique per TOVM for the connection's life
  std::string guest;            // guest name from the config
  std::uint8_t protocol = 6;    // IPPROTO_TCP or IPPROTO_UDP
  Endpoint local;               // the guest's end
  Endpoint remote;              // the peer's end
  bool guest_is_client = true;  // true: the guest connected; false: the guest accepted

  Flow flow_of(Direction d) const {
    const bool outbound = d == Direction::kOutbound;
    return outbound == guest_is_client ? Flow::kToServer : Flow::kToClient;
  }
};

struct Payload {
  Direction direction = Direction::kOutbound;
  Flow flow = Flow::kToServer;
  std::uint64_t stream_offset = 0;  // offset of bytes[0] within this direction's byte stream
  std::span<const std::byte> bytes;
};

// What an engine wants done. Ordered by severity: the worst finding decides a verdict.
enum class Action : std::uint8_t {
  kPass = 0,
  kAlert = 1,  // log and let the bytes pass (detection mode, or an alert-only rule)
  kBlock = 2,  // reset the connection both ways; these bytes never reach the other side
};

struct Finding {
  Action action = Action::kAlert;
  std::string rule_id;   // "sid:1000001", "942100", "VM.Test.EICAR-Body.UNOFFICIAL", "acl:3"
  std::string message;   // the rule's msg / CRS message / signature name
  std::string category;  // classtype, CRS tag, "malware", ...; may be empty
};

struct Verdict {
  Action action = Action::kPass;
  std::vector<Finding> findings;  // empty on the pass path (no allocation)

  void add(Finding f) {
    if (f.action > action) action = f.action;
    findings.push_back(std::move(f));
  }
  bool blocked() const { return action == Action::kBlock; }
};

class StreamInspector {
 public:
  virtual ~StreamInspector() = default;
  // Inspects the next in-order payload of one direction.
  virtual Verdict inspect(const Payload& payload) = 0;
  // End of stream: flush what is buffered (end-anchored patterns, an HTTP body without length).
  virtual Verdict finish() { return {}; }
};

class EngineThread {
 public:
  virtual ~EngineThread() = default;
  // Never fails for a well-formed StreamInfo; an engine that cannot take more streams returns a
  // StreamInspector whose first verdict blocks, with a finding that says why.
  virtual std::unique_ptr<StreamInspector> open_stream(const StreamInfo& info) = 0;
};

struct EngineConfig {
  std::string svm_name;                        // instance name from the config ("ids", "waf-2")
  std::string rules_path;                      // a rules file or directory; engine-specific format
  std::map<std::string, std::string> options;  // engine-specific key = value settings
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string_view kind() const = 0;  // "ids", "waf", "av", "acl"
  // Read-only engines may run in a parallel step (they never change bytes). All shipped ones are.
  virtual bool read_only() const { return true; }
  // One per worker thread; called on that thread before it inspects anything.
  virtual rpc::Result<std::unique_ptr<EngineThread>> make_thread() = 0;
  // Human-readable load summary for logs and `tosec status` ("412 rules, 2 databases").
  virtual std::string summary() const = 0;
};

// Builds an Engine from its config; errors name the file, line and what is wrong.
using EngineFactory = std::function<rpc::Result<std::unique_ptr<Engine>>(const EngineConfig&)>;

}  // namespace tosec::svm
