// tosec-tovm: the TCP offload engine for one guest (docs/tovm.md).
#include <signal.h>

#include <cstdio>

#include "tosec/tovm/options.h"
#include "tosec/tovm/worker.h"

int main(int argc, char** argv) {
  using namespace tosec::tovm;
  auto opts = parse_tovm_options(argc, argv);
  if (!opts) {
    std::fprintf(stderr, "tosec-tovm: %s\nTry '%s --help'.\n", opts.error().message.c_str(),
                 argv[0]);
    return 1;
  }
  if (opts->help) {
    std::fputs(tovm_usage(argv[0]).c_str(), stdout);
    return 0;
  }
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  auto worker = Worker::create(*opts, true);
  if (!worker) {
    std::fprintf(stderr, "tosec-tovm: %s\n", worker.error().message.c_str());
    return 1;
  }
  std::fputs("tosec-tovm: ready\n", stdout);
  std::fflush(stdout);
  auto s = (*worker)->run();
  worker->reset();
  if (!s) {
    std::fprintf(stderr, "tosec-tovm: %s\n", s.message().c_str());
    return 1;
  }
  return 0;
}
