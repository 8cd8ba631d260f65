// `tosec provision`: plan the domains, then print, define, start or destroy them.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tosec/cli/platform.h"
#include "tosec/provision/libvirt.h"

namespace tosec::provision {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

int dry_run(const std::vector<DomainSpec>& domains, const std::string& dir, std::FILE* out,
            std::FILE* err) {
  if (dir.empty()) {
    for (const auto& d : domains) {
      std::fprintf(out, "<!-- domain %s -->\n%s", d.name.c_str(), domain_xml(d).c_str());
    }
    return kExitOk;
  }
  if (auto s = cli::make_dirs(dir); !s) {
    std::fprintf(err, "tosec: provision: %s\n", s.message().c_str());
    return kExitFailed;
  }
  for (const auto& d : domains) {
    const std::string path = dir + "/" + d.name + ".xml";
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << domain_xml(d);
    f.close();
    if (!f) {
      std::fprintf(err, "tosec: provision: cannot write %s\n", path.c_str());
      return kExitFailed;
    }
    std::fprintf(out, "tosec: provision: wrote %s\n", path.c_str());
  }
  return kExitOk;
}

}  // namespace

int provision_command(const cli::Config& config, const ProvisionOptions& o, std::FILE* out,
                      std::FILE* err) {
  cli::Config cfg = config;
  if (!cfg.vm.images_dir.empty() && cfg.vm.images_dir[0] != '/') {  // config in the cwd
    std::error_code ec;
    cfg.vm.images_dir = std::filesystem::absolute(cfg.vm.images_dir, ec).lexically_normal();
  }
  auto planned = plan_domains(cfg);
  if (!planned) {
    std::fprintf(err, "tosec: provision: %s: %s\n", cfg.source.c_str(),
                 planned.error().message.c_str());
    return kExitUsage;
  }
  const auto& domains = *planned;
  if (o.action == Action::kDryRun) return dry_run(domains, o.output_dir, out, err);

  std::string uri = o.uri;
  if (uri.empty()) {
    const char* env = std::getenv("LIBVIRT_DEFAULT_URI");
    uri = env != nullptr && *env != '\0' ? env : kDefaultUri;
  }
  auto conn = Connection::open(uri);
  if (!conn) {
    std::fprintf(err, "tosec: provision: %s\n", conn.error().message.c_str());
    return kExitFailed;
  }
  auto fail = [&](const std::string& message) {
    std::fprintf(err, "tosec: provision: %s\n", message.c_str());
    return kExitFailed;
  };

  if (o.action == Action::kDestroy) {
    // Guests first, the TOVM last: the reverse of the start order. Best effort: every domain
    // is tried, the exit code says whether one failed.
    int rc = kExitOk;
    for (auto it = domains.rbegin(); it != domains.rend(); ++it) {
      auto r = conn->destroy(it->name);
      if (!r) {
        rc = fail(r.error().message);
        continue;
      }
      std::fprintf(out,
                   *r ? "tosec: provision: %s destroyed and undefined\n"
                      : "tosec: provision: %s is not defined\n",
                   it->name.c_str());
    }
    return rc;
  }

  for (const auto& d : domains) {
    if (auto s = conn->define(d); !s) return fail(s.message());
    std::fprintf(out, "tosec: provision: %s defined\n", d.name.c_str());
  }
  if (o.action == Action::kDefine) return kExitOk;

  const bool local = conn->local_qemu();
  if (local) {
    if (auto s = cli::make_dirs(cfg.platform.runtime_dir + "/logs"); !s) return fail(s.message());
  }
  for (const auto& d : domains) {
    if (local) {
      if (auto s = check_start_prerequisites(d); !s) return fail(s.message());
    }
    auto r = conn->start(d.name);
    if (!r) return fail(r.error().message);
    std::fprintf(out,
                 *r ? "tosec: provision: %s started (console: %s)\n"
                    : "tosec: provision: %s already running (console: %s)\n",
                 d.name.c_str(), d.console_log.c_str());
  }
  return kExitOk;
}

}  // namespace tosec::provision
