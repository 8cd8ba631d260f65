// The libvirt C API (libvirt-dev) for `tosec provision`: one connection, and define, start,
// destroy + undefine of the domains domains.h describes.
//
// Contract: every error names the domain it concerns ("domain tosec-guest-web: ...") and
// carries libvirt's own message (virSaveLastError). libvirt's default error printing to stderr
// is turned off: the caller decides what to print. A Connection is used by one thread.
#pragma once

#include <libvirt/libvirt.h>

#include <string>
#include <vector>

#include "tosec/provision/domains.h"
#include "tosec/rpc/status.h"

namespace tosec::provision {

class Connection {
 public:
  // virConnectOpen(uri); an empty uri means libvirt's default ($LIBVIRT_DEFAULT_URI, ...).
  static rpc::Result<Connection> open(const std::string& uri);
  Connection(Connection&& o) noexcept : conn_(o.conn_) { o.conn_ = nullptr; }
  Connection& operator=(Connection&& o) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Defines (or redefines: the UUID is stable) the domain's persistent configuration.
  rpc::Status define(const DomainSpec& domain);
  // Starts a defined domain; false if it was already running.
  rpc::Result<bool> start(const std::string& name);
  // Destroys (if running) and undefines; false if no such domain was defined.
  rpc::Result<bool> destroy(const std::string& name);
  // Names of every domain of the connection, defined or running, sorted.
  rpc::Result<std::vector<std::string>> list_all();
  // The XML of a defined domain as libvirt keeps it (virDomainGetXMLDesc).
  rpc::Result<std::string> xml_of(const std::string& name);
  // True for the QEMU driver on this host: then the VM opens our sockets and images, so
  // `provision --start` checks them first.
  bool local_qemu() const;
  const std::string& uri() const { return uri_; }

 private:
  Connection(virConnectPtr conn, std::string uri) : conn_(conn), uri_(std::move(uri)) {}
  virConnectPtr conn_ = nullptr;
  std::string uri_;
};

// What `tosec provision` does.
enum class Action { kDryRun, kDefine, kStart, kDestroy };

struct ProvisionOptions {
  Action action = Action::kDryRun;
  std::string uri;         // --connect; empty: $LIBVIRT_DEFAULT_URI, else kDefaultUri
  std::string output_dir;  // --dry-run --output DIR: one <domain>.xml per domain
};

inline constexpr const char* kDefaultUri = "qemu:///system";

// The subcommand: plans the domains of `cfg` and applies the action, printing one line per
// domain to `out` and errors to `err`. Returns the exit code: 0 ok, 1 a libvirt or file error,
// 2 a config error (the plan could not be made).
int provision_command(const cli::Config& cfg, const ProvisionOptions& options, std::FILE* out,
                      std::FILE* err);

}  // namespace tosec::provision
