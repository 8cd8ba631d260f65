#include "tosec/cli/launch.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace tosec::cli {

using rpc::Error;
using rpc::Result;

namespace {

void set_var(std::vector<std::string>& env, std::string_view key, const std::string& value) {
  const std::string prefix = std::string(key) + "=";
  for (auto& e : env) {
    if (e.starts_with(prefix)) {
      e = prefix + value;
      return;
    }
  }
  env.push_back(prefix + value);
}

const std::string* find_var(const std::vector<std::string>& env, std::string_view key) {
  const std::string prefix = std::string(key) + "=";
  for (const auto& e : env) {
    if (e.starts_with(prefix)) return &e;
  }
  return nullptr;
}

std::string absolute(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) != nullptr) return buf;
  return path;
}

}  // namespace

std::vector<std::string> build_app_env(const std::vector<std::string>& base, const AppEnv& app) {
  std::vector<std::string> env = base;
  std::string preload = app.preload;
  if (const std::string* old = find_var(env, "LD_PRELOAD")) {
    const std::string existing = old->substr(sizeof("LD_PRELOAD=") - 1);
    // ld.so separates entries by ':' or ' '; do not load the shim twice (nested tosec run).
    bool present = false;
    std::size_t pos = 0;
    while (pos <= existing.size()) {
      const std::size_t end = existing.find_first_of(": ", pos);
      const std::string item = existing.substr(pos, end == std::string::npos ? end : end - pos);
      if (item == app.preload) present = true;
      if (end == std::string::npos) break;
      pos = end + 1;
    }
    if (present) {
      preload = existing;
    } else if (!existing.empty()) {
      preload += ":" + existing;
    }
  }
  set_var(env, "LD_PRELOAD", preload);
  set_var(env, "TOSEC_IVSHMEM_SOCKET", app.ivshmem_socket);
  set_var(env, "TOSEC_TOE_SOCKET", app.toe_socket);
  set_var(env, "TOSEC_GUEST", app.guest);
  if (app.spin_ns >= 0) set_var(env, "TOSEC_SPIN_NS", std::to_string(app.spin_ns));
  if (!app.exclude.empty()) {
    std::string list;
    for (const auto& e : app.exclude) list += (list.empty() ? "" : ",") + e;
    set_var(env, "TOSEC_EXCLUDE", list);
  }
  return env;
}

std::vector<std::string> current_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_executable(const std::string& path) {
  return file_exists(path) && ::access(path.c_str(), X_OK) == 0;
}

Result<std::string> resolve_preload(const char* env_preload, const std::string& self_dir,
                                    const ExistsFn& exists) {
  if (env_preload != nullptr && *env_preload != '\0') {
    if (exists(env_preload)) return absolute(env_preload);
    return Error{ENOENT, std::string(kPreloadName) + " not found: TOSEC_PRELOAD=" + env_preload +
                             " does not exist"};
  }
  const std::string tried[] = {self_dir + "/../lib/" + kPreloadName, kInstalledPreload};
  for (const auto& p : tried) {
    if (exists(p)) return absolute(p);
  }
  return Error{ENOENT, std::string(kPreloadName) + " not found; tried " + tried[0] + " and " +
                           tried[1] + " (build guest_lib, or set TOSEC_PRELOAD)"};
}

Result<Binaries> resolve_binaries(const char* env_bin_dir, const std::string& self_dir,
                                  const ExistsFn& executable) {
  const bool from_env = env_bin_dir != nullptr && *env_bin_dir != '\0';
  // Absolute: the supervisor chdirs to / and restarts children from there.
  const std::string dir = absolute(from_env ? std::string(env_bin_dir) : self_dir);
  Binaries b{dir + "/" + kIvshmemServerName, dir + "/" + kTovmName, dir + "/tosec-svm"};
  for (const auto* p : {&b.ivshmem_server, &b.tovm}) {
    if (!executable(*p)) {
      return Error{ENOENT, "platform binary " + *p + " not found or not executable (" +
                               (from_env ? "from TOSEC_BIN_DIR" : "next to tosec") +
                               "; set TOSEC_BIN_DIR to the directory holding " +
                               kIvshmemServerName + " and " + kTovmName + ")"};
    }
  }
  return b;
}

std::string self_dir() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<std::size_t>(n));
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : p.substr(0, slash));
}

int exit_code_from_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace tosec::cli
