#!/usr/bin/env bash
# app: netperf TCP_RR | role: guest client
# netserver in the peer namespace, netperf (64 B request/response) as the guest application.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
netperf_guest_client TCP_RR 3 -r 64,64
pass "TCP_RR 64 B: $NETPERF_RESULT (trans/s,units,seconds,mean latency us)$OFFLOAD_NOTE"
