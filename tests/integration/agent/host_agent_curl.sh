#!/usr/bin/env bash
# VM mode without a VM: tosec-guest-agent joins the guest's tosec-ivshmem-server as an ordinary
# process peer (--device socket:...), the TOE serves it on the agent lane (tosec-tovm
# --vm-agent), and an unmodified curl under the unchanged LD_PRELOAD shim, pointed at the
# AGENT's two sockets, fetches pages from a web server in a peer network namespace.
# Proves agent + TOE end to end before anyone boots a VM (docs/guest-agent.md).
#
# Checks: curl's bytes (a small page and a 4 MiB file, sha256), that curl joined through the
# agent (shim log "joined the platform", agent log "pid N -> lane L", TOE log "in the VM"), that
# every TCP socket to the peer seen while curl runs belongs to the TOE, not to curl, that the
# TOE's sockets close once curl exits (EOF on B -> kAgentHangup), two concurrent curls (two
# lanes, two vectors), a refused connect (kAgentKill, then sock_diag sees A go -> kAgentHangup),
# and that a SIGTERM stops the agent cleanly (exit 0).
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
SHIM_ENV=(env LD_PRELOAD="$PRELOAD" TOSEC_IVSHMEM_SOCKET="$AGENT_IVSHMEM"
  TOSEC_TOE_SOCKET="$AGENT_TOE" TOSEC_LOG=info TOSEC_EXCLUDE=)
check_run curl 60 guest "${SHIM_ENV[@]}" \
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

# curl has exited: the last A of each socket is gone, so EOF on B -> kAgentHangup -> the TOE
# closes its kernel sockets to the peer.
for ((i = 0; i < 100; i++)); do
  [[ -z "$(ss -Htn "dst $PEER_IP" 2>/dev/null)" ]] && break
  sleep 0.1
done
[[ -z "$(ss -Htn "dst $PEER_IP" 2>/dev/null)" ]] ||
  fail "sockets to the peer outlive curl (no hang-up reached the TOE): $(ss -Htnp "dst $PEER_IP" | head -1)"

# Two processes at once: two lanes, two vectors.
lanes_before=$(grep -c -- "-> lane" "$APPS_TMP/agent.log")
check_run curl2 60 guest "${SHIM_ENV[@]}" bash -c "
  curl -sS --fail --max-time 50 --limit-rate 2M -o '$APPS_TMP/a.bin' 'http://$PEER_IP:$WWW_PORT/big.bin' & p1=\$!
  curl -sS --fail --max-time 50 --limit-rate 2M -o '$APPS_TMP/b.bin' 'http://$PEER_IP:$WWW_PORT/big.bin' & p2=\$!
  wait \$p1 && wait \$p2"
expect_sha "$APPS_TMP/a.bin" "$BIG_SUM" "big.bin (first of two curls)"
expect_sha "$APPS_TMP/b.bin" "$BIG_SUM" "big.bin (second of two curls)"
[[ $(grep -c -- "-> lane" "$APPS_TMP/agent.log") -ge $((lanes_before + 2)) ]] ||
  fail "two concurrent curls did not both get a lane through the agent"

# fork(): the child joins on its own (a new vector and lane) and uses the socket it inherited;
# the parent's close alone must not hang the socket up (B sees EOF only at the last A).
check_run fork 60 guest "${SHIM_ENV[@]}" /usr/bin/python3 -c "
import os, socket, sys
s = socket.create_connection(('$PEER_IP', $WWW_PORT))
pid = os.fork()
if pid == 0:
    s.sendall(b'GET /index.html HTTP/1.0\\r\\n\\r\\n')
    data = b''
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    os._exit(0 if b'hello from the peer' in data else 3)
s.close()
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))"
[[ $(grep -c "joined the platform" "$APPS_TMP/fork.out") -ge 2 ]] ||
  fail "parent and child did not both join through the agent: $(first_error_line "$APPS_TMP/fork.out")"

# A refused connect: the TOE mirrors the reset onto A through the agent (kAgentKill).
hangups_before=$(grep -c "hangup sent" "$APPS_TMP/agent.log")
rc=0
run_guest 30 "${SHIM_ENV[@]}" curl -sS --max-time 20 "http://$PEER_IP:1/" >"$APPS_TMP/refused.out" 2>&1 || rc=$?
[[ $rc -eq 7 ]] || fail "curl to a closed port: exit $rc, expected 7 (couldn't connect): $(first_error_line "$APPS_TMP/refused.out")"
grep -q "joined the platform" "$APPS_TMP/refused.out" || fail "the refused curl was not offloaded"
# Its socket is hung up too once curl is gone (killed B: sock_diag sees the last A go).
for ((i = 0; i < 100; i++)); do
  [[ $(grep -c "hangup sent" "$APPS_TMP/agent.log") -gt $hangups_before ]] && break
  sleep 0.1
done
[[ $(grep -c "hangup sent" "$APPS_TMP/agent.log") -gt $hangups_before ]] ||
  fail "the refused socket was never hung up by the agent"
grep -q "killed (B closed over its sentinel)" "$APPS_TMP/agent.log" ||
  fail "the refused connect was not mirrored by kAgentKill"

bg_alive "$AGENT_PID" agent
# Not through $(...): a subshell cannot wait for our child, so it would not see its status.
stop_bg "$AGENT_PID" 5 >"$APPS_TMP/agent.rc"
rc=$(cat "$APPS_TMP/agent.rc")
[[ "$rc" == 0 ]] || fail "the agent exited with status $rc on SIGTERM: $(first_error_line "$APPS_TMP/agent.log")"
grep -q "closing every B" "$APPS_TMP/agent.log" || fail "the agent did not log its clean exit"

# A restarted agent (new generation) with room for one process only: the TOE takes it back on
# the agent lane; a second process while the first holds the only vector is refused and stays
# on the kernel stack (its transfer still succeeds).
start_bg agent2 "$BIN/tosec-guest-agent" --device "socket:$IVSHMEM" \
  --ivshmem-socket "$AGENT_IVSHMEM" --toe-socket "$AGENT_TOE" --vectors 2 -v
AGENT_PID=$BG_PID
for ((i = 0; i < 150; i++)); do
  grep -q "serving shims" "$APPS_TMP/agent2.log" && break
  sleep 0.1
done
grep -q "serving shims" "$APPS_TMP/agent2.log" ||
  fail "the restarted agent got no answer from the TOE: $(first_error_line "$APPS_TMP/agent2.log")"
# The holder keeps its lane (and the only process vector) until told to go on: a connected
# socket, then a GET once $APPS_TMP/go exists. (Not curl --limit-rate: curl 7.88 finishes a
# local 4 MiB at full speed regardless, so the "slow" process was often gone already.)
start_bg slow "${SHIM_ENV[@]}" /usr/bin/python3 -c "
import http.client, os, sys, time
c = http.client.HTTPConnection('$PEER_IP', $WWW_PORT, timeout=50)
c.connect()
for _ in range(600):
    if os.path.exists('$APPS_TMP/go'):
        break
    time.sleep(0.05)
c.request('GET', '/big.bin')
r = c.getresponse()
open('$APPS_TMP/slow.bin', 'wb').write(r.read())
sys.exit(0 if r.status == 200 else 3)"
SLOW_PID=$BG_PID
for ((i = 0; i < 100; i++)); do
  grep -q -- "-> lane" "$APPS_TMP/agent2.log" && break
  sleep 0.1
done
grep -q -- "-> lane" "$APPS_TMP/agent2.log" ||
  fail "the holder got no lane from the restarted agent: $(first_error_line "$APPS_TMP/slow.log")"
check_run second 60 guest "${SHIM_ENV[@]}" curl -sS --fail --max-time 50 \
  -o "$APPS_TMP/second.bin" "http://$PEER_IP:$WWW_PORT/big.bin"
expect_sha "$APPS_TMP/second.bin" "$BIG_SUM" "big.bin (process beyond the vectors)"
grep -q "every vector is in use" "$APPS_TMP/agent2.log" ||
  fail "the agent did not refuse a process beyond its vectors"
grep -q "joined the platform" "$APPS_TMP/second.out" &&
  fail "a process beyond the agent's vectors was offloaded anyway"
bg_alive "$SLOW_PID" slow # it held the lane the whole time
touch "$APPS_TMP/go"
for ((i = 0; i < 600; i++)); do
  kill -0 "$SLOW_PID" 2>/dev/null || break
  sleep 0.1
done
rc=0
wait "$SLOW_PID" || rc=$?
[[ $rc -eq 0 ]] || fail "the offloaded holder's fetch failed (exit $rc): $(first_error_line "$APPS_TMP/slow.log")"
expect_sha "$APPS_TMP/slow.bin" "$BIG_SUM" "big.bin (holder through the restarted agent)"
grep -q "joined the platform" "$APPS_TMP/slow.log" || fail "the holder was not offloaded"
pass "curl (LD_PRELOAD shim -> tosec-guest-agent -> agent lane -> tosec-tovm --vm-agent) fetched index.html and 4 MiB big.bin, sha256 ok; sockets closed after exit; two concurrent curls on two lanes; a forked child uses its parent's socket; refused connect reported; a restarted agent serves again and refuses a process beyond its vectors (kernel fallback) [$note]"
