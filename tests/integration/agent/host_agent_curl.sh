#!/usr/bin/env bash
# VM mode without a VM: tosec-guest-agent joins the guest's tosec-ivshmem-server as an ordinary
# process peer (--device socket:...), the TOE serves it on the agent lane (tosec-tovm
# --vm-agent), and an unmodified curl under the unchanged LD_PRELOAD shim, pointed at the
# AGENT's two sockets, fetches pages from a web server in a peer network namespace.
# Proves agent + TOE end to end before anyone boots a VM (docs/guest-agent.md).
#
# Checks: curl's bytes (a small page and a 4 MiB file, sha256), that curl joined through the
# agent (shim log "joined the platform", agent log "pid N -> lane L", TOE log "in the VM"), that
# every TCP socket to the peer seen while curl runs belongs to the TOE, not to curl, and that a
# SIGTERM stops the agent cleanly (exit 0).
#
# Environment (CMake passes them): TOSEC_BIN_DIR (tosec-tovm, tosec-ivshmem-server,
# tosec-guest-agent), TOSEC_PRELOAD (libtosec-preload.so).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../apps/lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apps/lib/app_steps.sh"
apps_init kernel # the fixture's namespaces; the platform below is ours, not `tosec run`'s

BIN=${TOSEC_BIN_DIR:?TOSEC_BIN_DIR unset}
PRELOAD=${TOSEC_PRELOAD:?TOSEC_PRELOAD unset}
for b in tosec-tovm tosec-ivshmem-server tosec-guest-agent; do
  [[ -x "$BIN/$b" ]] || skip "$BIN/$b not built"
done
[[ -f "$PRELOAD" ]] || skip "$PRELOAD not built"
"$BIN/tosec-tovm" --help 2>&1 | grep -q -- --vm-agent || skip "tosec-tovm has no --vm-agent yet"

LANES=16
VECTORS=$((LANES + 1)) # the VM's MSI-X vectors: the agent's 0 + one per process lane
IVSHMEM="$APPS_TMP/ivshmem.sock"
AGENT_IVSHMEM="$APPS_TMP/agent-ivshmem.sock"
AGENT_TOE="$APPS_TMP/agent-toe.sock"

start_peer_www
make_random_file "$WWW_DIR/big.bin" 4 >"$APPS_TMP/big.sum"
BIG_SUM=$(cat "$APPS_TMP/big.sum")

start_bg ivshmem-server "$BIN/tosec-ivshmem-server" -F -S "$IVSHMEM" -M "tosec-agent-$$" \
  -l 64M -n "$VECTORS"
wait_file() { # wait_file PATH SECONDS NAME
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [[ -S "$1" ]] && return 0
    sleep 0.1
  done
  fail "$3 did not create $1 within $2 s: $(first_error_line "$APPS_TMP/$3.log")"
}
wait_file "$IVSHMEM" 10 ivshmem-server
start_bg toe "$BIN/tosec-tovm" --guest vm0 --ivshmem "$IVSHMEM" \
  --sidecar "$APPS_TMP/toe-host.sock" --lanes "$LANES" --vm-agent
wait_file "$APPS_TMP/toe-host.sock" 10 toe
start_bg agent "$BIN/tosec-guest-agent" --device "socket:$IVSHMEM" \
  --ivshmem-socket "$AGENT_IVSHMEM" --toe-socket "$AGENT_TOE" --vectors "$VECTORS" -v
AGENT_PID=$BG_PID
wait_file "$AGENT_TOE" 15 agent # the agent opens its sockets once the TOE answered its hello

# Sample who owns the TCP sockets to the peer while curl runs.
start_bg ss-watch bash -c "for ((i = 0; i < 600; i++)); do ss -Htnp 'dst $PEER_IP'; sleep 0.05; done"
SS_PID=$BG_PID
check_run curl 60 guest env LD_PRELOAD="$PRELOAD" TOSEC_IVSHMEM_SOCKET="$AGENT_IVSHMEM" \
  TOSEC_TOE_SOCKET="$AGENT_TOE" TOSEC_LOG=info TOSEC_EXCLUDE= \
  curl -sS --fail --max-time 50 --limit-rate 2M \
  -o "$APPS_TMP/got.html" "http://$PEER_IP:$WWW_PORT/index.html" \
  -o "$APPS_TMP/got.bin" "http://$PEER_IP:$WWW_PORT/big.bin"
stop_bg "$SS_PID" 1 >/dev/null

expect_content "$APPS_TMP/got.html" "hello from the peer" "index.html content differs:"
expect_sha "$APPS_TMP/got.bin" "$BIG_SUM" big.bin
grep -q "joined the platform" "$APPS_TMP/curl.out" ||
  fail "curl did not join the platform through the agent: $(first_error_line "$APPS_TMP/curl.out")"
grep -q -- "-> lane" "$APPS_TMP/agent.log" || fail "the agent gave curl no lane"
grep -q "in the VM" "$APPS_TMP/toe.log" || fail "the TOE opened no lane through the agent"
owners=$(sed -n 's/.*users:(("\([^"]*\)".*/\1/p' "$APPS_TMP/ss-watch.log" | sort -u | tr '\n' ' ')
if [[ -n "$owners" && "$owners" != "tosec-tovm " ]]; then
  fail "sockets to the peer owned by '$owners' (expected only tosec-tovm): not offloaded"
fi
note="sockets seen: ${owners:-none (too fast for the sampler)}"

bg_alive "$AGENT_PID" agent
# Not through $(...): a subshell cannot wait for our child, so it would not see its status.
stop_bg "$AGENT_PID" 5 >"$APPS_TMP/agent.rc"
rc=$(cat "$APPS_TMP/agent.rc")
[[ "$rc" == 0 ]] || fail "the agent exited with status $rc on SIGTERM: $(first_error_line "$APPS_TMP/agent.log")"
grep -q "closing every B" "$APPS_TMP/agent.log" || fail "the agent did not log its clean exit"
pass "curl (LD_PRELOAD shim -> tosec-guest-agent -> agent lane -> tosec-tovm --vm-agent) fetched index.html and 4 MiB big.bin, sha256 ok [$note]"
