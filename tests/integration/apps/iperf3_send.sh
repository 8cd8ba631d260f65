#!/usr/bin/env bash
# app: iperf3 (guest sends) | role: guest client
# iperf3 server in the peer (one test), iperf3 client as the guest sending for 3 s.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
iperf3_guest_client # (no extra iperf3 arguments)
pass "iperf3 guest->peer: $IPERF3_RESULT$OFFLOAD_NOTE"
