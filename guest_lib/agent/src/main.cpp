// tosec-guest-agent: the in-guest agent of VM mode (docs/guest-agent.md).
#include <cstdio>

#include "tosec/agent/agent_loop.h"
#include "tosec/agent/log.h"

int main(int argc, char** argv) {
  using namespace tosec::agent;
  auto opts = parse_agent_options(argc, argv);
  if (!opts) {
    if (opts.error().code == ECANCELED) {
      std::fputs(kAgentUsage, stdout);
      return 0;
    }
    log_line(opts.error().message);
    std::fputs(kAgentUsage, stderr);
    return 2;
  }
  if (opts->verbose) set_verbosity(Verbosity::kDebug);
  return run_agent(*opts);
}
