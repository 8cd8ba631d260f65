#include "tosec/provision/libvirt.h"

#include <libvirt/virterror.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <mutex>

namespace tosec::provision {

using rpc::Error;
using rpc::Result;
using rpc::Status;

namespace {

// libvirt prints every error to stderr unless a handler is set; we report them ourselves.
void quiet_libvirt() {
  static std::once_flag once;
  std::call_once(once, [] {
    ::virInitialize();
    ::virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
  });
}

struct LibvirtError {
  int code = 0;
  std::string message;
};

// The error of the last failed call of this thread (copied: later calls may reset it).
LibvirtError last_error(const char* fallback) {
  LibvirtError out{0, fallback};
  if (virErrorPtr e = ::virSaveLastError(); e != nullptr) {
    out.code = e->code;
    if (e->message != nullptr) out.message = e->message;
    ::virFreeError(e);
  }
  ::virResetLastError();
  return out;
}

Error domain_error(const std::string& name, const char* fallback) {
  return Error{EIO, "domain " + name + ": " + last_error(fallback).message};
}

struct DomainFree {
  void operator()(virDomainPtr d) const { ::virDomainFree(d); }
};
using DomainHandle = std::unique_ptr<virDomain, DomainFree>;

}  // namespace

Result<Connection> Connection::open(const std::string& uri) {
  quiet_libvirt();
  virConnectPtr c = ::virConnectOpen(uri.empty() ? nullptr : uri.c_str());
  if (c == nullptr) {
    return Error{EIO, "cannot connect to libvirt at " + (uri.empty() ? "the default URI" : uri) +
                          ": " + last_error("virConnectOpen failed").message};
  }
  std::string actual = uri;
  if (char* u = ::virConnectGetURI(c); u != nullptr) {
    actual = u;
    std::free(u);  // NOLINT: libvirt allocates with malloc
  }
  return Connection(c, actual);
}

Connection& Connection::operator=(Connection&& o) noexcept {
  if (this != &o) {
    if (conn_ != nullptr) ::virConnectClose(conn_);
    conn_ = o.conn_;
    uri_ = std::move(o.uri_);
    o.conn_ = nullptr;
  }
  return *this;
}

Connection::~Connection() {
  if (conn_ != nullptr) ::virConnectClose(conn_);
}

Status Connection::define(const DomainSpec& domain) {
  const std::string xml = domain_xml(domain);
  DomainHandle d(::virDomainDefineXML(conn_, xml.c_str()));
  if (!d) return domain_error(domain.name, "virDomainDefineXML failed");
  return {};
}

Result<bool> Connection::start(const std::string& name) {
  DomainHandle d(::virDomainLookupByName(conn_, name.c_str()));
  if (!d) return domain_error(name, "not defined");
  const int active = ::virDomainIsActive(d.get());
  if (active < 0) return domain_error(name, "virDomainIsActive failed");
  if (active == 1) return false;
  if (::virDomainCreate(d.get()) != 0) return domain_error(name, "virDomainCreate failed");
  return true;
}

Result<bool> Connection::destroy(const std::string& name) {
  DomainHandle d(::virDomainLookupByName(conn_, name.c_str()));
  if (!d) {
    const LibvirtError e = last_error("virDomainLookupByName failed");
    if (e.code == VIR_ERR_NO_DOMAIN) return false;
    return Error{EIO, "domain " + name + ": " + e.message};
  }
  const int active = ::virDomainIsActive(d.get());
  if (active < 0) return domain_error(name, "virDomainIsActive failed");
  if (active == 1 && ::virDomainDestroy(d.get()) != 0) {
    return domain_error(name, "virDomainDestroy failed");
  }
  const int persistent = ::virDomainIsPersistent(d.get());
  if (persistent < 0) return domain_error(name, "virDomainIsPersistent failed");
  if (persistent == 1 && ::virDomainUndefine(d.get()) != 0) {
    return domain_error(name, "virDomainUndefine failed");
  }
  return true;
}

Result<std::vector<std::string>> Connection::list_all() {
  virDomainPtr* doms = nullptr;
  const int n = ::virConnectListAllDomains(conn_, &doms, 0);
  if (n < 0) {
    return Error{EIO, "cannot list the domains of " + uri_ + ": " +
                          last_error("virConnectListAllDomains failed").message};
  }
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) {
    if (const char* name = ::virDomainGetName(doms[i]); name != nullptr) names.emplace_back(name);
    ::virDomainFree(doms[i]);
  }
  std::free(doms);  // NOLINT: libvirt allocates with malloc
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::string> Connection::xml_of(const std::string& name) {
  DomainHandle d(::virDomainLookupByName(conn_, name.c_str()));
  if (!d) return domain_error(name, "not defined");
  char* xml = ::virDomainGetXMLDesc(d.get(), VIR_DOMAIN_XML_INACTIVE);
  if (xml == nullptr) return domain_error(name, "virDomainGetXMLDesc failed");
  std::string out = xml;
  std::free(xml);  // NOLINT: libvirt allocates with malloc
  return out;
}

bool Connection::local_qemu() const {
  const char* type = ::virConnectGetType(conn_);
  const bool qemu = type != nullptr && std::string_view(type) == "QEMU";
  // Local: no host in the URI ("qemu:///system", "qemu+unix:///session").
  const auto sep = uri_.find("://");
  return qemu && sep != std::string::npos && uri_.compare(sep + 3, 1, "/") == 0;
}

}  // namespace tosec::provision
