// tosec-hostd: the host control plane (docs/control-plane.md "tosec-hostd").
//
//   tosec-hostd [--config FILE] [--runtime-dir DIR] [--ready-fd N]
//
// Holds the flock on <runtime_dir>/supervisor.pid for its whole life (a platform runs exactly
// while it is held), supervises the platform's processes, serves HostControl on
// <runtime_dir>/hostd.sock (mode 0600) and, with [host] metrics_listen, Prometheus /metrics.
// `tosec up` starts it detached with --ready-fd: "ready\n" on that fd once every role is up,
// otherwise the error. Run by hand (or by systemd) it stays in the foreground. SIGTERM/SIGINT
// stop everything; logs go to <runtime_dir>/logs/supervisor.log.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tosec/cli/config.h"
#include "tosec/cli/inspection.h"
#include "tosec/cli/launch.h"
#include "tosec/cli/platform.h"
#include "tosec/cli/process.h"
#include "tosec/cli/supervisor.h"
#include "tosec/hostd/metrics.h"
#include "tosec/hostd/service.h"
#include "tosec/hostd/supervisor.h"

namespace {

using namespace tosec;

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (fd >= 0 && off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

[[noreturn]] void fail(int ready_fd, const std::string& msg) {
  std::fprintf(stderr, "tosec-hostd: %s\n", msg.c_str());
  write_all(ready_fd, msg);
  std::exit(1);
}

}  // namespace

int main(int argc, char* argv[]) {
  std::string config_path;
  std::string runtime_dir;
  int ready_fd = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 < argc && a == "--config") {
      config_path = argv[++i];
    } else if (i + 1 < argc && a == "--runtime-dir") {
      runtime_dir = argv[++i];
    } else if (i + 1 < argc && a == "--ready-fd") {
      ready_fd = std::atoi(argv[++i]);
    } else if (a == "-h" || a == "--help") {
      std::puts(
          "Usage: tosec-hostd [--config FILE] [--runtime-dir DIR] [--ready-fd N]\n"
          "The TOSEC host daemon; normally started by `tosec up` (docs/control-plane.md).");
      return 0;
    } else {
      std::fprintf(stderr, "tosec-hostd: unexpected argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  cli::Config cfg = cli::default_config();
  if (!config_path.empty()) {
    auto c = cli::load_config(config_path);
    if (!c) fail(ready_fd, c.error().message);
    cfg = std::move(*c);
  }
  if (!runtime_dir.empty()) cfg.platform.runtime_dir = runtime_dir;
  const std::string& dir = cfg.platform.runtime_dir;
  auto bin = cli::resolve_binaries(std::getenv("TOSEC_BIN_DIR"), cli::self_dir());
  if (!bin) fail(ready_fd, bin.error().message);
  if (auto s = cli::make_dirs(dir + "/logs"); !s) fail(ready_fd, s.message());

  const std::string pid_file = dir + "/" + cli::kPidFileName;
  const int pfd = ::open(pid_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (pfd < 0) fail(ready_fd, "cannot open " + pid_file + ": " + std::strerror(errno));
  if (::flock(pfd, LOCK_EX | LOCK_NB) < 0) {
    fail(ready_fd, "a platform is already running in " + dir + "; run `tosec down` first");
  }
  // Only the lock holder may clear what a platform that did not stop cleanly left behind.
  cli::remove_tree(dir + "/guests");
  if (auto s = cli::make_dirs(dir + "/guests"); !s) fail(ready_fd, s.message());
  if (::ftruncate(pfd, 0) < 0) fail(ready_fd, "cannot truncate " + pid_file);
  write_all(pfd, std::to_string(::getpid()) + "\n");

  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  const int log = cli::open_log(dir + "/logs/supervisor.log");
  if (null < 0 || log < 0) {
    fail(ready_fd, "cannot open " + dir + "/logs/supervisor.log: " + std::strerror(errno));
  }
  ::dup2(null, STDIN_FILENO);
  ::dup2(log, STDOUT_FILENO);
  ::dup2(log, STDERR_FILENO);
  ::close(null);
  ::close(log);

  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before gRPC starts its threads
  const int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  ::signal(SIGPIPE, SIG_IGN);
  if (sfd < 0) fail(ready_fd, std::string("signalfd: ") + std::strerror(errno));

  hostd::log_line("tosec-hostd: starting %zu guest(s) from %s in %s", cfg.guests.size(),
                  cfg.source.c_str(), dir.c_str());
  const std::string socket_path = dir + "/" + cli::kHostdSocketName;
  int code = 0;
  {
    hostd::Supervisor sup(cfg, *bin);
    auto stop_platform = [&] {
      sup.stop_all();
      cli::remove_tree(dir + "/guests");
      ::unlink(socket_path.c_str());
      ::unlink(pid_file.c_str());
    };
    if (auto s = sup.start_all(); !s) {
      hostd::log_line("start failed: %s", s.message().c_str());
      stop_platform();
      fail(ready_fd, s.message());
    }
    auto data_dir = cli::resolve_data_dir(std::getenv("TOSEC_DATA_DIR"), cli::self_dir());
    hostd::HostControlService service(sup, cfg, data_dir ? *data_dir : std::string("."));
    hostd::MetricsServer metrics;
    if (!cfg.host.metrics_listen.empty()) {
      auto s = metrics.start(cfg.host.metrics_listen, [&] {
        std::vector<hostd::RoleInfo> roles;
        {
          std::lock_guard lock(sup.mutex());
          roles = sup.roles();
        }
        return hostd::render_metrics(service.guest_status(), roles, service.generation());
      });
      if (!s) {
        stop_platform();
        fail(ready_fd, "[host] metrics_listen: " + s.message());
      }
      service.set_metrics_address(metrics.bound_address());
      hostd::log_line("metrics on http://%s/metrics", metrics.bound_address().c_str());
    }
    ::unlink(socket_path.c_str());
    const mode_t old_umask = ::umask(077);  // the socket is born 0600: only root may steer
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    ::umask(old_umask);
    if (!server) {
      metrics.stop();
      stop_platform();
      fail(ready_fd, "cannot serve gRPC on unix:" + socket_path);
    }
    ::chmod(socket_path.c_str(), 0600);
    hostd::log_line("all guests ready; HostControl on unix:%s", socket_path.c_str());
    write_all(ready_fd, "ready\n");  // `tosec up` returns 0
    if (ready_fd >= 0) ::close(ready_fd);
    sup.loop(sfd);
    service.set_stopping();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    metrics.stop();
    stop_platform();
  }
  hostd::log_line("stopped");
  return code;
}
