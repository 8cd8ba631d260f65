#!/usr/bin/env bash
# app: iperf3 -R (guest receives) | role: guest client
# iperf3 server in the peer (one test), iperf3 client -R as the guest: the peer sends for 3 s.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
iperf3_guest_client -R
pass "iperf3 peer->guest (-R): $IPERF3_RESULT$OFFLOAD_NOTE"
