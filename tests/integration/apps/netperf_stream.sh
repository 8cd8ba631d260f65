#!/usr/bin/env bash
# app: netperf TCP_STREAM | role: guest client
# netserver in the peer namespace, netperf TCP_STREAM (guest sends) as the guest application.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
netperf_guest_client TCP_STREAM 3 -m 16384
pass "TCP_STREAM: $NETPERF_RESULT (throughput,units,seconds,-)$OFFLOAD_NOTE"
