// tosec-ivshmem-server: QEMU-compatible ivshmem server (docs/ivshmem-protocol.md).
//
// Startup order matters for scripts: the shared memory is created and the socket is listening
// before a daemonizing parent exits (with 0 only if the daemon is ready, with 1 and the daemon's
// error otherwise), so `tosec-ivshmem-server ... && qemu ...` never races.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "ivshmem_server.h"
#include "server_options.h"
#include "shm_backing.h"

namespace {

using tosec::host::IvshmemServer;

IvshmemServer* volatile g_server = nullptr;
volatile sig_atomic_t g_stop = 0;

extern "C" void on_stop_signal(int) {
  g_stop = 1;
  if (IvshmemServer* s = g_server) s->request_stop();
}

const char* g_prog = "tosec-ivshmem-server";

int fail_usage(const std::string& msg) {
  std::fprintf(stderr, "%s: %s\nTry '%s -h' for more information.\n", g_prog, msg.c_str(), g_prog);
  return 1;
}

bool install_signals() {
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_IGN;  // belt and braces: sends already use MSG_NOSIGNAL
  if (::sigaction(SIGPIPE, &sa, nullptr) < 0) return false;
  sa.sa_handler = on_stop_signal;
  return ::sigaction(SIGINT, &sa, nullptr) == 0 && ::sigaction(SIGTERM, &sa, nullptr) == 0;
}

bool write_pid_file(const std::string& path, std::string* err) {
  const std::string text = std::to_string(::getpid()) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    *err = "cannot write pid file " + path + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  ::close(fd);
  return true;
}

// Forks into the background. Returns in the daemon with `ready_fd` set to the write end of a
// pipe the waiting parent reads: "" then EOF means ready, any text is an error it prints.
// The parent never returns: it _exit()s so no destructor unlinks the daemon's socket or shm.
bool daemonize(int* ready_fd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return false;
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid > 0) {
    ::close(fds[1]);
    std::string msg;
    char buf[256];
    ssize_t n = 0;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) msg.append(buf, static_cast<std::size_t>(n));
    }
    if (msg.empty()) ::_exit(0);
    std::fprintf(stderr, "%s: %s\n", g_prog, msg.c_str());
    ::_exit(1);
  }
  ::close(fds[0]);
  ::setsid();
  // Second fork: the daemon is not a session leader, so it can never acquire a terminal.
  const pid_t pid2 = ::fork();
  if (pid2 < 0) return false;
  if (pid2 > 0) ::_exit(0);
  *ready_fd = fds[1];
  return true;
}

void detach_stdio() {
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;
  // A daemon must not hold its starter's pipes open (ctest, CI runners wait for their EOF).
  ::dup2(null, STDIN_FILENO);
  ::dup2(null, STDOUT_FILENO);
  ::dup2(null, STDERR_FILENO);
  ::close(null);
}

}  // namespace

int main(int argc, char* argv[]) {
  using namespace tosec::host;
  if (argc > 0) {
    const char* slash = std::strrchr(argv[0], '/');
    g_prog = slash != nullptr ? slash + 1 : argv[0];
  }
  auto parsed = parse_server_options(argc, argv);
  if (!parsed) return fail_usage(parsed.error().message);
  ServerOptions& opts = *parsed;
  if (opts.help) {
    std::fputs(server_usage(g_prog).c_str(), stdout);
    return 0;
  }
  for (const auto& w : opts.warnings) std::fprintf(stderr, "%s: warning: %s\n", g_prog, w.c_str());
  if (!install_signals()) {
    std::fprintf(stderr, "%s: sigaction: %s\n", g_prog, std::strerror(errno));
    return 1;
  }

  auto shm = ShmBacking::create(opts.shm_flag, opts.shm_arg, opts.shm_size);
  if (!shm) {
    std::fprintf(stderr, "%s: %s\n", g_prog, shm.error().message.c_str());
    return 1;
  }
  IvshmemServerConfig cfg;
  cfg.socket_path = opts.socket_path;
  cfg.vectors = opts.vectors;
  cfg.id_policy = opts.id_policy;
  cfg.verbose = opts.verbose;
  auto server = IvshmemServer::start(cfg, shm->take_fd());
  if (!server) {
    std::fprintf(stderr, "%s: %s\n", g_prog, server.error().message.c_str());
    return 1;
  }
  if (opts.verbose) {
    std::printf("%s: shared memory: %s, %llu bytes\n", g_prog, shm->description().c_str(),
                static_cast<unsigned long long>(shm->size()));
    std::fflush(stdout);
  }

  int ready_fd = -1;
  if (!opts.foreground && !daemonize(&ready_fd)) {
    std::fprintf(stderr, "%s: cannot daemonize: %s\n", g_prog, std::strerror(errno));
    return 1;
  }
  const bool want_pid_file = !opts.foreground || opts.pid_file_given;
  std::string err;
  if (want_pid_file && !write_pid_file(opts.pid_file, &err)) {
    if (ready_fd >= 0) {
      [[maybe_unused]] auto n = ::write(ready_fd, err.data(), err.size());
    } else {
      std::fprintf(stderr, "%s: %s\n", g_prog, err.c_str());
    }
    return 1;
  }
  if (ready_fd >= 0) {
    detach_stdio();
    ::close(ready_fd);  // EOF without text: the parent exits 0
  }

  g_server = server->get();
  if (g_stop != 0) (*server)->request_stop();  // a signal that came before g_server was set
  auto st = (*server)->run();
  g_server = nullptr;
  if (want_pid_file) ::unlink(opts.pid_file.c_str());
  if (!st) {
    std::fprintf(stderr, "%s: %s\n", g_prog, st.message().c_str());
    return 1;
  }
  if (opts.verbose) std::printf("%s: stopped\n", g_prog);
  return 0;  // destructors: peers disconnected, socket unlinked, shm unlinked if we created it
}
