// The agent's single event loop (epoll): listening sockets, sidecar connections, the local
// eventfds that stand for the TOE's vectors, the B ends, the agent's own vector 0, a timer
// (hello retries, sock_diag checks of killed sockets, polling when the device has no
// interrupts) and SIGTERM/SIGINT, which end it cleanly (every B closed).
#pragma once

#include "tosec/agent/agent_options.h"

namespace tosec::agent {

// Runs until SIGTERM/SIGINT (returns 0) or a fatal error (logged, returns 1).
int run_agent(const AgentOptions& options);

}  // namespace tosec::agent
