// tosec-tovm: the TCP offload engine for one or more guests (docs/tovm.md).
#include <signal.h>

#include <cstdio>

#include "tosec/tovm/options.h"
#include "tosec/tovm/tovm_process.h"

int main(int argc, char** argv) {
  using namespace tosec::tovm;
  auto cl = parse_tovm_command_line(argc, argv);
  if (!cl) {
    std::fprintf(stderr, "tosec-tovm: %s\nTry '%s --help'.\n", cl.error().message.c_str(), argv[0]);
    return 1;
  }
  if (cl->help) {
    std::fputs(tovm_usage(argv[0]).c_str(), stdout);
    return 0;
  }
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);  // topology reload (docs/tovm.md), taken by worker 0's signalfd
  ::sigprocmask(SIG_BLOCK, &set, nullptr);  // before any worker thread: they inherit it
  auto process = TovmProcess::create(*cl);
  if (!process) {
    std::fprintf(stderr, "tosec-tovm: %s\n", process.error().message.c_str());
    return 1;
  }
  // "ready": every guest's region and sidecars exist and every worker is on its CPU (--cpus).
  auto s = (*process)->run([] {
    std::fputs("tosec-tovm: ready\n", stdout);
    std::fflush(stdout);
  });
  process->reset();
  if (!s) {
    std::fprintf(stderr, "tosec-tovm: %s\n", s.message().c_str());
    return 1;
  }
  return 0;
}
