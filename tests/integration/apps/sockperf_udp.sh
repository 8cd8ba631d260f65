#!/usr/bin/env bash
# app: sockperf ping-pong UDP | role: guest client
# sockperf server (UDP) in the peer, `sockperf ping-pong` (UDP) as the guest for 3 s.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
sockperf_guest_client udp
pass "sockperf pp UDP: $SOCKPERF_RESULT$OFFLOAD_NOTE"
