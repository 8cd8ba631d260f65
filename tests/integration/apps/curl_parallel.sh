#!/usr/bin/env bash
# app: curl, 4 processes at once (HTTP GET from nginx) | role: guest clients
# Four curl processes in one guest fetch the 16 MiB file at the same time, six rounds. Each
# process has its own lane; they share the guest's receive pool, so this is where a chunk lent
# to two sockets at once would show (it did: a late kBufferReturn from an exited process once
# freed a chunk another process was reading). Every copy's sha256 is checked.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/app_steps.sh"
apps_init "$@"
apps_require nginx curl
peer_web_site
ROUNDS=6
PROCS=4
offload_watch_start "dst $PEER_IP"
check_run curls 75 guest bash -c "
  for ((r = 0; r < $ROUNDS; r++)); do
    pids=()
    for ((p = 0; p < $PROCS; p++)); do
      curl -sS --fail --max-time 50 -o '$APPS_TMP/got.'\$r.\$p '$PEER_WEB_URL/big.bin' & pids+=(\$!)
    done
    for pid in \"\${pids[@]}\"; do wait \$pid || exit 1; done
  done"
for ((r = 0; r < ROUNDS; r++)); do
  for ((p = 0; p < PROCS; p++)); do
    expect_sha "$APPS_TMP/got.$r.$p" "$PEER_BIG_SUM" "big.bin (round $r, process $p)"
  done
done
offload_watch_check
pass "$((ROUNDS * PROCS)) curl processes ($PROCS at a time) fetched 16 MiB big.bin, sha256 ok$OFFLOAD_NOTE"
