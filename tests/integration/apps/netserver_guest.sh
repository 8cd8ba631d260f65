#!/usr/bin/env bash
# app: netserver (netperf TCP_RR, TCP_CRR, TCP_STREAM, TCP_MAERTS) | role: guest server
# netserver is the guest application (it forks a child per test); netperf runs in the peer.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/app_steps.sh"
apps_init "$@"
apps_require netperf netserver
free_port
port=$FREE_PORT
start_guest_bg netserver netserver -D -4 -p "$port" -L "$HOST_IP"
guest_server_ready netserver "$port"
summary=()
for t in TCP_RR TCP_CRR TCP_STREAM TCP_MAERTS; do
  # shellcheck disable=SC2054  # "64,64" is one netperf argument
  args=(-r 64,64)
  [[ $t == TCP_STREAM || $t == TCP_MAERTS ]] && args=(-m 16384)
  check_run "netperf-$t" 60 peer netperf -4 -H "$HOST_IP" -p "$port" -t "$t" -l 2 -P 0 -- \
    "${args[@]}" -o THROUGHPUT,THROUGHPUT_UNITS
  line="$(grep -E '^[0-9.]+,' "$APPS_TMP/netperf-$t.out" | tail -n1 || true)"
  is_positive "${line%%,*}" ||
    fail "netperf $t against the guest netserver: no positive result: $(first_error_line "$APPS_TMP/netperf-$t.out")"
  summary+=("$t=${line/,/ }")
  bg_alive "$GUEST_SRV" netserver
done
offload_watch_check
pass "${summary[*]}$OFFLOAD_NOTE"
