// What `tosec run` hands to the application and how it finds its pieces: the environment of a
// guest application (LD_PRELOAD shim + where the platform is), where libtosec-preload.so and the
// platform binaries are, and how a wait status becomes tosec's exit code.
//
// Pure functions (file-existence checks are injectable) so the rules are unit-tested.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tosec/rpc/status.h"

namespace tosec::cli {

inline constexpr const char* kPreloadName = "libtosec-preload.so";
inline constexpr const char* kInstalledPreload = "/usr/local/lib/libtosec-preload.so";
inline constexpr const char* kIvshmemServerName = "tosec-ivshmem-server";
inline constexpr const char* kTovmName = "tosec-tovm";

// Where the application's platform is.
struct AppEnv {
  std::string preload;               // absolute path of libtosec-preload.so
  std::string ivshmem_socket;        // TOSEC_IVSHMEM_SOCKET
  std::string toe_socket;            // TOSEC_TOE_SOCKET (the TOE's sidecar)
  std::string guest;                 // TOSEC_GUEST
  std::vector<std::string> exclude;  // TOSEC_EXCLUDE (comma-joined); empty: left as inherited
  std::int64_t spin_ns = -1;         // TOSEC_SPIN_NS; < 0: left as inherited
};

// `base` is "KEY=VALUE" entries (like environ). Returns it with LD_PRELOAD = preload prepended
// to any existing LD_PRELOAD (not duplicated if already there) and the TOSEC_* variables set.
std::vector<std::string> build_app_env(const std::vector<std::string>& base, const AppEnv& app);
// The current process's environment as "KEY=VALUE" entries.
std::vector<std::string> current_environment();

using ExistsFn = std::function<bool(const std::string&)>;
bool file_exists(const std::string& path);
bool is_executable(const std::string& path);

// libtosec-preload.so: $TOSEC_PRELOAD if set (and then it must exist), else
// <self_dir>/../lib/libtosec-preload.so (build tree layout), else kInstalledPreload.
// The error names every path tried.
rpc::Result<std::string> resolve_preload(const char* env_preload, const std::string& self_dir,
                                         const ExistsFn& exists = file_exists);

// Platform binaries live next to `tosec` (self_dir), or in $TOSEC_BIN_DIR if set.
struct Binaries {
  std::string ivshmem_server;
  std::string tovm;
  std::string svm;  // tosec-svm: checked only when a chain needs it
};
rpc::Result<Binaries> resolve_binaries(const char* env_bin_dir, const std::string& self_dir,
                                       const ExistsFn& executable = is_executable);

// Directory of the running executable (/proc/self/exe).
std::string self_dir();

// waitpid() status -> exit code: the exit status, or 128 + signal number if it was killed.
int exit_code_from_wait_status(int status);

}  // namespace tosec::cli
