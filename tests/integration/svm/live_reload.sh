#!/usr/bin/env bash
# app: python3 line-echo server behind the ids SVM | role: guest server, inspected
# Live topology change in the TOE (docs/tovm.md "Reload", docs/svm.md "Live changes"): the guest
# is a line-echo server under `tosec run --chain ids`; a client in the peer namespace opens ONE
# connection (inspected by ids) and holds it. Then, with the binaries of this build:
#   1. a topology file whose chain names an SVM the mesh does not have + SIGHUP: rejected, the
#      TOE's status shows topology_error and the old generation;
#   2. the same topology with the guest's policies pointing at no chain (= not inspected) and the
#      next generation + SIGHUP: the status shows the new generation and no error;
#   3. the attack (ids sid:1000002) on the held connection is still blocked (an open stream keeps
#      its chain), the same attack on a NEW connection is echoed (new streams take the new
#      policies); the status metrics show the ids SVM's payloads, its block and its latencies.
# The topology files are written with protoc --decode/--encode (tosec.v1.Topology, text format).
set -euo pipefail
alerts="$(mktemp /tmp/tosec-svm-alerts.XXXXXX)"
export TOSEC_RUN_ARGS="--chain ids --alerts $alerts"
# shellcheck source-path=SCRIPTDIR source=../apps/lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apps/lib/app_steps.sh"
APPS_SCENARIO="live_reload"
apps_init offloaded
apps_require pgrep protoc
[[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
proto_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../rpc/proto" && pwd)"
trap 'rc=$?; set +e; rm -f "$alerts"; (exit $rc); _apps_cleanup' EXIT

free_port
port=$FREE_PORT

cat >"$APPS_TMP/echo_server.py" <<'PY'
import socketserver, sys

class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            for line in self.rfile:
                self.wfile.write(line)
        except OSError as e:
            print("connection %s: %s" % (self.client_address, e), flush=True)

class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

with Server((sys.argv[1], int(sys.argv[2])), Echo) as srv:
    print("echo server listening", flush=True)
    srv.serve_forever()
PY

# The held connection: one echoed line, then waits for GO_FILE, then sends the attack and
# prints how the connection answered ("echoed ...", "eof", "error: ...", "timeout").
cat >"$APPS_TMP/holder.py" <<'PY'
import os, socket, sys, time
host, port, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=10)
s.sendall(b"hello before the reload\n")
print("HELLO", s.recv(4096), flush=True)
deadline = time.monotonic() + 100
while not os.path.exists(go):
    if time.monotonic() > deadline:
        print("no go file"); sys.exit(1)
    time.sleep(0.05)
try:
    s.sendall(b"GET /../../etc/passwd\n")
    data = s.recv(4096)
    print("RESULT", "echoed" if data else "eof", repr(data[:40]), flush=True)
except socket.timeout:
    print("RESULT timeout", flush=True)
except OSError as e:
    print("RESULT error:", e, flush=True)
PY

cat >"$APPS_TMP/attack.py" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
try:
    s.sendall(b"GET /../../etc/passwd\n")
    data = s.recv(4096)
    print("echoed" if data else "eof", repr(data[:40]))
except socket.timeout:
    print("timeout")
except OSError as e:
    print("error:", e)
PY

# status.py SOCKET [FIELD...]: the TOE's status JSON from its --status socket; with FIELDs, the
# value at that path (dots; [name=X] picks a list element by name).
cat >"$APPS_TMP/status.py" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
buf = b""
while not buf.endswith(b"\n"):
    c = s.recv(65536)
    if not c:
        break
    buf += c
doc = json.loads(buf)
if len(sys.argv) == 2:
    print(json.dumps(doc))
    sys.exit(0)
for path in sys.argv[2:]:
    v = doc
    for part in path.split("."):
        if part.startswith("[name="):
            v = [e for e in v if e.get("name") == part[6:-1]][0]
        else:
            v = v[part]
    print(v)
PY

start_guest_bg echo /usr/bin/python3 "$APPS_TMP/echo_server.py" "$HOST_IP" "$port"
guest_server_ready echo "$port"
run_pid=$GUEST_SRV

# The tosec-tovm process of this run, and its --topology and --status paths.
toe_pid=""
for pid in $(pgrep -x tosec-tovm 2>/dev/null || true); do
  p=$pid
  for ((i = 0; i < 32 && p > 1; i++)); do
    p="$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null || echo 0)"
    if [[ "$p" == "$run_pid" ]]; then toe_pid=$pid; break; fi
  done
done
[[ -n "$toe_pid" ]] || fail "no tosec-tovm process under tosec run (pid $run_pid)"
mapfile -t toe_args < <(tr '\0' '\n' <"/proc/$toe_pid/cmdline")
topology="" status_sock=""
for ((i = 0; i + 1 < ${#toe_args[@]}; i++)); do
  case "${toe_args[i]}" in
    --topology) topology="${toe_args[i + 1]}" ;;
    --status) status_sock="${toe_args[i + 1]}" ;;
  esac
done
[[ -f "$topology" ]] || fail "tosec-tovm $toe_pid has no readable --topology (${topology:-none})"
[[ -S "$status_sock" ]] || fail "tosec-tovm $toe_pid has no --status socket (${status_sock:-none})"
log "TOE pid $toe_pid, topology $topology, status $status_sock"
status() { python3 "$APPS_TMP/status.py" "$status_sock" "$@"; }

gen0="$(status topology_generation)" || fail "status has no topology_generation: $(status)"
[[ "$(status topology_error)" == "" ]] || fail "topology_error before any reload: $(status topology_error)"
log "generation in force: $gen0"

go_file="$APPS_TMP/holder.go"
start_bg holder --peer python3 "$APPS_TMP/holder.py" "$HOST_IP" "$port" "$go_file"
for ((i = 0; i < 200; i++)); do
  grep -q '^HELLO' "$APPS_TMP/holder.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "^HELLO b'hello before the reload" "$APPS_TMP/holder.log" ||
  fail "the held connection got no echo: $(cat "$APPS_TMP/holder.log")"

protoc -I "$proto_dir" --decode=tosec.v1.Topology control.proto <"$topology" >"$APPS_TMP/topo.txt" ||
  fail "protoc cannot decode $topology"
grep -q '^  chain: "[^"]' "$APPS_TMP/topo.txt" || fail "no policy with a chain in: $(cat "$APPS_TMP/topo.txt")"
grep -q 'svm: "ids"' "$APPS_TMP/topo.txt" || fail "no chain step through ids in: $(cat "$APPS_TMP/topo.txt")"

# install TEXT_FILE: encode, write next to the topology and rename over it (atomic), SIGHUP.
install_topology() {
  protoc -I "$proto_dir" --encode=tosec.v1.Topology control.proto <"$1" >"$topology.tmp" ||
    fail "protoc cannot encode $1"
  mv -f "$topology.tmp" "$topology"
  kill -HUP "$toe_pid"
}

# 1. Rejected: the chain names an SVM this TOE's mesh does not have.
{ echo "generation: $((gen0 + 1))"; grep -v '^generation:' "$APPS_TMP/topo.txt" |
  sed 's/svm: "ids"/svm: "nope"/'; } >"$APPS_TMP/bad.txt"
grep -q 'svm: "nope"' "$APPS_TMP/bad.txt" || fail "cannot make the bad topology: $(cat "$APPS_TMP/bad.txt")"
install_topology "$APPS_TMP/bad.txt"
err=""
for ((i = 0; i < 100; i++)); do
  err="$(status topology_error)"
  [[ -n "$err" ]] && break
  sleep 0.1
done
[[ "$err" == *nope* ]] || fail "rejected topology: topology_error is '${err}', expected it to name svm nope"
[[ "$(status topology_generation)" == "$gen0" ]] ||
  fail "rejected topology: generation $(status topology_generation), expected $gen0 to stay"
kill -0 "$toe_pid" 2>/dev/null || fail "tosec-tovm died on the rejected topology"
log "rejected as expected: $err"

# 2. Accepted: the guest's policies select no chain (= not inspected), next generation.
{ echo "generation: $((gen0 + 2))"; grep -v '^generation:' "$APPS_TMP/topo.txt" |
  sed 's/^  chain: ".*"$/  chain: ""/'; } >"$APPS_TMP/good.txt"
install_topology "$APPS_TMP/good.txt"
for ((i = 0; i < 100; i++)); do
  [[ "$(status topology_generation)" == "$((gen0 + 2))" ]] && break
  sleep 0.1
done
[[ "$(status topology_generation)" == "$((gen0 + 2))" ]] ||
  fail "accepted topology: generation $(status topology_generation), expected $((gen0 + 2))"
[[ "$(status topology_error)" == "" ]] || fail "accepted topology: topology_error '$(status topology_error)'"
log "generation $((gen0 + 2)) in force"

# 3. The held connection keeps ids: the attack is blocked. A new one is not inspected.
touch "$go_file"
for ((i = 0; i < 150; i++)); do
  grep -q '^RESULT' "$APPS_TMP/holder.log" 2>/dev/null && break
  sleep 0.1
done
held="$(grep -m1 '^RESULT' "$APPS_TMP/holder.log" || true)"
[[ -n "$held" ]] || fail "the held connection gave no result within 15 s"
[[ "$held" != *echoed* ]] || fail "the held connection (opened under ids) echoed the attack: $held"
log "held connection: $held"
new="$(run_peer 20 python3 "$APPS_TMP/attack.py" "$HOST_IP" "$port" 2>&1 || true)"
[[ "$new" == echoed* ]] || fail "a new connection under the new topology did not echo the attack: $new"
log "new connection: $new"

# Metrics moved: the ids SVM got payloads, blocked one, and timed its verdicts.
m="$(status 'metrics.svms.[name=ids].payloads' 'metrics.svms.[name=ids].block' \
  'metrics.svms.[name=ids].latency_us.count' metrics.streams.inspected metrics.streams.blocked)" ||
  fail "status metrics incomplete: $(status)"
read -r payloads blocks lat_count inspected blocked <<<"$(tr '\n' ' ' <<<"$m")"
log "metrics: ids payloads $payloads, block $blocks, latency count $lat_count; streams inspected $inspected, blocked $blocked"
((payloads >= 2)) || fail "metrics: ids payloads $payloads, expected >= 2"
((blocks >= 1)) || fail "metrics: ids block $blocks, expected >= 1"
((lat_count >= 1)) || fail "metrics: ids latency count $lat_count, expected >= 1"
((inspected >= 1 && blocked >= 1)) || fail "metrics: streams inspected $inspected, blocked $blocked"
status metrics.rings | grep -q "'name': 'lane0.req'" || fail "metrics: no lane0.req ring: $(status metrics.rings)"
grep -q '1000002' "$alerts" || fail "no alert for sid 1000002 in $alerts"
pass "live reload: rejected file kept generation $gen0; generation $((gen0 + 2)) applied to new streams only"
