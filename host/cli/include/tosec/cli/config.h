// The platform config file (docs/config.md): one TOML file describes the topology the `tosec`
// CLI brings up: the runtime directory, the TOVM's engine settings, the guests and their channel
// geometry, and the inspection: SVMs, chains and the policies that select a chain for a stream.
//
// Contract: parse_config() either returns a fully validated Config or one Error whose message
// names the file, the line:column of the offending value and the field path, then what was
// wrong ("bad.toml:7:11: guest[1].lanes: must be in [1, 256], got 0"). Unknown keys are errors:
// a typo must never be silently ignored. Not thread-safe against nothing: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/guest_channel.h"
#include "tosec/rpc/status.h"

namespace tosec::cli {

inline constexpr const char* kDefaultRuntimeDir = "/run/tosec";
inline constexpr const char* kDefaultGuestName = "default";
inline constexpr std::size_t kMaxGuestNameLength = 32;
// runtime_dir + "/guests/" + name + "/ivshmem.sock" must fit in sockaddr_un::sun_path (108).
inline constexpr std::size_t kMaxRuntimeDirLength = 52;
// A guest region (shm object, QEMU ivshmem BAR) larger than this is a configuration mistake.
inline constexpr std::uint64_t kMaxRegionSize = std::uint64_t{64} << 30;

struct PlatformConfig {
  std::string runtime_dir = kDefaultRuntimeDir;
};

// [host]: the host daemon tosec-hostd (docs/control-plane.md).
struct HostConfig {
  // Prometheus /metrics listen address "IP:PORT"; empty (the default) serves no metrics.
  std::string metrics_listen;
};

struct TovmConfig {
  // "shared": `tosec up` runs one tosec-tovm process for every guest, guest i on worker thread
  // i % workers; "per-guest": one tosec-tovm process per guest (a crash touches one guest only).
  // `tosec run`'s embedded platform has one guest either way.
  std::string mode = "shared";
  std::uint32_t workers = 1;
  // CPUs for the TOE's worker threads, cpulist syntax ("1", "2-3"): worker i runs only on the
  // i-th, round robin (tosec-tovm --cpus). Empty: wherever the kernel puts them.
  std::string cpus;
  // Busy-poll budget of the TOE's workers before they sleep (adaptive; docs/tovm.md *Busy-poll*).
  std::uint64_t spin_ns = 50'000;
  std::string log_level = "error";
};

struct GuestConfig {
  std::string name;
  rpc::GuestChannelConfig channel;   // defaults = GuestChannelConfig's
  std::vector<std::string> exclude;  // CIDRs and "port:N": traffic that stays on the kernel
  // The shim's blocking-call spin budget in ns (TOSEC_SPIN_NS, decision 0011); -1: the shim's
  // default.
  std::int64_t spin_ns = -1;
  // The guest runs in a VM (a [vm] table whose roles include "guest"): its TOE serves the
  // in-guest agent on the last lane (tosec-tovm --vm-agent, decision 0008) and its region has
  // one doorbell vector per lane (the agent's and one per shim process).
  bool in_vm = false;
};

// ---- inspection: security VMs, chains, policies (docs/config.md, docs/svm.md) --------------
struct SvmConfig {
  std::string name;
  std::string engine;  // "ids" | "waf" | "av" | "acl"
  std::string rules;   // rules file or directory, absolute (resolved against the config file);
                       // empty: the engine's shipped default under examples/rules
  std::string mode = "prevent";                // "prevent" (blocks) | "detect" (alerts only)
  std::uint32_t workers = 0;                   // inspection worker threads (0: inline)
  std::map<std::string, std::string> options;  // engine-specific settings
};

struct ChainConfig {
  std::string name;
  std::vector<std::vector<std::string>> steps;  // each step: one SVM or a parallel group
  std::string fail = "closed";                  // "closed" | "open"
  std::uint32_t deadline_ms = 2000;             // per payload per step before the SVM is "down"
};

struct PolicyConfig {
  std::string name;  // operator's name for live changes; "policy-N" (1-based) when not given
  std::string guest;
  std::string direction = "both";  // "out" | "in" | "both"
  std::string chain;
  std::string protocol = "tcp";  // "tcp" | "udp" | "any"
  std::string remote;            // CIDR, empty = any
  std::string local;             // CIDR, empty = any
  std::string port;              // "80" or "8000-8080", empty = any
};

// VM mode: what `tosec provision` puts into the libvirt domains (docs/provisioning.md).
struct VmConfig {
  std::string images_dir;  // kernel and initrds; empty = <runtime_dir>/images; resolved against
                           // the config file's directory
  std::vector<std::string> roles = {"tovm", "svm", "guest"};  // the roles that run as VMs
  std::string name_prefix = "tosec-";                         // of every domain name
  std::uint32_t guest_memory_mib = 256;
  std::uint32_t tovm_memory_mib = 512;
  std::uint32_t svm_memory_mib = 512;
  std::uint32_t guest_vcpus = 1;
  bool present = false;  // the config has a [vm] table (without one, everything is a process)
  bool has_role(std::string_view role) const;
};

struct Config {
  std::string source;  // file name, or "<built-in defaults>"
  PlatformConfig platform;
  HostConfig host;
  TovmConfig tovm;
  VmConfig vm;
  std::vector<GuestConfig> guests;
  std::vector<SvmConfig> svms;
  std::vector<ChainConfig> chains;
  std::vector<PolicyConfig> policies;

  const GuestConfig* find_guest(std::string_view name) const;
};

// A path in a config file, relative to the directory of `source` (unchanged if absolute or if
// `source` is not a file).
std::string resolve_config_path(const std::string& source, const std::string& path);

// Parses and validates `text`; `source` names the file in messages.
rpc::Result<Config> parse_config(std::string_view text, const std::string& source);
// Reads and parses `path` ("cannot read PATH: ..." if it cannot be read).
rpc::Result<Config> load_config(const std::string& path);
// The built-in configuration used when no -c is given: one guest "default" with the defaults.
Config default_config();

// One exclude entry: an IPv4/IPv6 address with an optional /prefix, or "port:N" (N in
// [1, 65535]). The message says what is wrong, without a position.
rpc::Status check_exclude_entry(std::string_view entry);
// Splits a comma list ("127.0.0.0/8, port:53"), trimming blanks; each entry checked.
rpc::Result<std::vector<std::string>> parse_exclude_list(std::string_view list);
// Guest names: 1-32 of [A-Za-z0-9_.-], starting with a letter or digit (they become file names).
rpc::Status check_guest_name(std::string_view name);
// An address with an optional /prefix ("10.0.0.0/8", "::1"); a port or range ("80", "80-90").
rpc::Status check_cidr(std::string_view text);
rpc::Status check_port_spec(std::string_view text);
// "127.0.0.1:9464": an IPv4 address and a port (0 = any free one).
rpc::Status check_listen_address(std::string_view text);

}  // namespace tosec::cli
