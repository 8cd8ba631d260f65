#!/usr/bin/env bash
# app: sockperf ping-pong TCP | role: guest client
# sockperf server (TCP) in the peer, `sockperf ping-pong --tcp` as the guest for 3 s.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
sockperf_guest_client tcp
pass "sockperf pp TCP: $SOCKPERF_RESULT$OFFLOAD_NOTE"
