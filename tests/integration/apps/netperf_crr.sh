#!/usr/bin/env bash
# app: netperf TCP_CRR | role: guest client
# netserver in the peer namespace, netperf TCP_CRR (a connection per transaction) as the guest.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
netperf_guest_client TCP_CRR 3 -r 64,64
pass "TCP_CRR 64 B: $NETPERF_RESULT (trans/s,units,seconds,mean latency us)$OFFLOAD_NOTE"
