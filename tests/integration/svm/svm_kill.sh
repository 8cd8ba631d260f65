#!/usr/bin/env bash
# app: python3 line-echo server behind the ids SVM | role: guest server, inspected
# Acceptance of the SVM fail policies (docs/svm.md "Fail policies and restarts"): the guest is a
# small line-echo TCP server under `tosec run --chain ids --fail POLICY`; a client in the peer
# namespace holds ONE connection, sends a numbered line every ~50 ms and reads the echoes. Mid
# stream, the ids tosec-svm process of this run is SIGKILLed; `tosec run` restarts it.
#   closed: the connection is reset (or closed) soon after the kill, no line sent after the kill
#           is echoed; once the SVM is back (new pid), a NEW connection echoes correctly.
#   open:   the connection keeps echoing (byte-exact, in order) after the kill, the alert log has
#           a "svm down: bypass" line, and a new connection echoes correctly too.
#
# Usage: svm_kill.sh closed|open
# SVM_KILL_NO_KILL=1 skips the SIGKILL (everything else unchanged): a negative check of the test
# itself, both variants must then FAIL (closed: echoes after the "kill"; open: no bypass alert).
set -euo pipefail
policy=${1:-closed}
case "$policy" in
  closed | open) ;;
  *) echo "usage: $0 closed|open" >&2; exit 2 ;;
esac
alerts="$(mktemp /tmp/tosec-svm-alerts.XXXXXX)"
export TOSEC_RUN_ARGS="--chain ids --fail $policy --alerts $alerts"
# shellcheck source-path=SCRIPTDIR source=../apps/lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apps/lib/app_steps.sh"
APPS_SCENARIO="svm_kill_$policy"
apps_init offloaded
apps_require pgrep
[[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
# set +e first: under errexit, `(exit $rc)` with rc != 0 would end the trap before the cleanup.
trap 'rc=$?; set +e; rm -f "$alerts"; (exit $rc); _apps_cleanup' EXIT

free_port
port=$FREE_PORT

# The guest: one thread per connection, each line echoed as soon as it is read.
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

# The long-lived client: every ~50 ms "line N <padding>\n" (one write, TCP_NODELAY); logs
# "SEND N T", "RECV N T" (T = wall clock, compared with the kill time taken by this script) and
# "BAD ..." for an echo that is not the next expected line; ends with "END T ... reason WHY"
# on reset, EOF, a send error, the stop file, or after MAX seconds.
cat >"$APPS_TMP/client.py" <<'PY'
import os, select, socket, sys, time
host, port, stop, maxs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
def out(*a):
    print(*a, flush=True)
def line(n):
    return ("line %d %s\n" % (n, "x" * (n % 37))).encode()
s = socket.create_connection((host, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setblocking(False)
out("CONNECTED", time.time(), s.getsockname()[1])
t0 = time.monotonic()
n_sent = 0
n_recv = 0
buf = b""
next_send = t0
reason = "max time"
while True:
    now = time.monotonic()
    if now - t0 > maxs:
        break
    if os.path.exists(stop):
        reason = "stopped"
        break
    if now >= next_send:
        data = line(n_sent)
        # Stamped before the send: a stamp after the kill then means a send after it (stamped
        # after, a preemption right after send() could make an earlier line look late).
        t_send = time.time()
        try:
            sent = s.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            reason = "send error: %s" % e
            break
        if sent != len(data):
            # Never expected for ~60-byte lines every 50 ms; a partial write would desync us.
            reason = "short send (%d of %d bytes)" % (sent, len(data))
            break
        out("SEND", n_sent, t_send)
        n_sent += 1
        next_send = max(next_send + 0.05, now)
    r, _, _ = select.select([s], [], [], max(0.0, min(0.05, next_send - time.monotonic())))
    if not r:
        continue
    try:
        chunk = s.recv(65536)
    except BlockingIOError:
        continue
    except OSError as e:
        reason = "recv error: %s" % e
        break
    if not chunk:
        reason = "eof"
        break
    buf += chunk
    while b"\n" in buf:
        got, buf = buf.split(b"\n", 1)
        got += b"\n"
        if got != line(n_recv):
            out("BAD expected", repr(line(n_recv)), "got", repr(got), time.time())
            reason = "bad echo"
            break
        out("RECV", n_recv, time.time())
        n_recv += 1
    if reason == "bad echo":
        break
out("END", time.time(), "sent", n_sent, "received", n_recv, "partial", len(buf), "reason", reason)
s.close()
PY

# A fresh connection: COUNT lines, each echo must come back unchanged within 10 s.
cat >"$APPS_TMP/fresh.py" <<'PY'
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=10)
f = s.makefile("rb")
for i in range(count):
    want = ("fresh %d\n" % i).encode()
    s.sendall(want)
    got = f.readline()
    if got != want:
        print("echo %d: got %r, expected %r" % (i, got, want))
        sys.exit(1)
print("ok: %d lines echoed" % count)
PY

# An attack on a fresh connection (ids rule sid:1000002 of examples/rules/ids.rules, a drop
# rule on raw TCP): prints "echoed" when the guest's echo came back, else how it ended.
cat >"$APPS_TMP/attack.py" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
try:
    s.sendall(b"GET /../../etc/passwd\n")
    data = s.recv(4096)
    print("echoed" if data else "eof", repr(data[:40]))
except socket.timeout:
    print("timeout")
except OSError as e:
    print("error:", e)
PY

start_guest_bg echo /usr/bin/python3 "$APPS_TMP/echo_server.py" "$HOST_IP" "$port"
guest_server_ready echo "$port"
run_pid=$GUEST_SRV

# svm_pids: the pids of the "ids" tosec-svm processes that descend from our `tosec run`.
svm_pids() {
  local cand pid p i
  cand="$(pgrep -f 'tosec-svm.*--name ids' 2>/dev/null || true)"
  for pid in $cand; do
    p=$pid
    for ((i = 0; i < 32 && p > 1; i++)); do
      p="$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null || echo 0)"
      if [[ "$p" == "$run_pid" ]]; then
        printf '%s\n' "$pid"
        break
      fi
    done
  done
}

old_svm="$(svm_pids)"
[[ -n "$old_svm" ]] || fail "no 'tosec-svm ... --name ids' process under tosec run (pid $run_pid)"
[[ "$(wc -w <<<"$old_svm")" -eq 1 ]] || fail "several ids SVMs under tosec run: $old_svm"
log "ids SVM pid $old_svm"

# fresh_connection NAME SECONDS: retry a fresh connection for up to SECONDS (a fail-closed chain
# refuses new streams until the SVM is back); fail unless one echoes correctly.
fresh_connection() {
  local name=$1 secs=$2 deadline tries=0 rc
  deadline=$((SECONDS + secs))
  while :; do
    tries=$((tries + 1))
    rc=0
    run_peer 20 python3 "$APPS_TMP/fresh.py" "$HOST_IP" "$port" 5 >"$APPS_TMP/$name.out" 2>&1 || rc=$?
    if [[ $rc -eq 0 ]]; then
      log "$name: $(tail -n1 "$APPS_TMP/$name.out") (attempt $tries)"
      return 0
    fi
    ((SECONDS < deadline)) || break
    sleep 0.5
  done
  fail "$name: no correct echo on a new connection within ${secs}s ($tries attempts): $(first_error_line "$APPS_TMP/$name.out")"
}

fresh_connection fresh-before 20

stop_file="$APPS_TMP/client.stop"
client_log="$APPS_TMP/client.log"
start_bg client --peer python3 "$APPS_TMP/client.py" "$HOST_IP" "$port" "$stop_file" 90
client_pid=$BG_PID

# count_recv_after T: echoes received of lines sent after wall-clock time T.
count_recv_after() {
  awk -v k="$1" '$1 == "SEND" && $3 > k { late[$2] = 1 } $1 == "RECV" && ($2 in late) { n++ }
    END { print n + 0 }' "$client_log"
}
client_end() { grep -m1 '^END ' "$client_log" 2>/dev/null || true; }
nrecv() {
  local n
  n="$(grep -c '^RECV ' "$client_log" 2>/dev/null)" || true
  printf '%s\n' "${n:-0}"
}

# At least 20 echoes before the kill (bounded: 30 s on a loaded machine).
for ((i = 0; i < 300; i++)); do
  (($(nrecv) >= 20)) && break
  [[ -z "$(client_end)" ]] || break
  sleep 0.1
done
[[ -z "$(client_end)" ]] || fail "the client ended before the kill: $(client_end)"
before="$(nrecv)"
((before >= 20)) || fail "only $before echoes within 30 s before the kill: $(tail -n1 "$client_log")"

bg_alive "$run_pid" echo
kill_t="$(date +%s.%N)"
if [[ "${SVM_KILL_NO_KILL:-0}" == 1 ]]; then
  log "SVM_KILL_NO_KILL=1: NOT killing tosec-svm $old_svm (negative check of the test)"
else
  kill -KILL "$old_svm" || fail "kill -KILL $old_svm failed"
  # "After the kill" starts when the SVM is dead (gone or a zombie), not when kill was called: a
  # line the SVM inspected and passed in between was legitimately echoed (fail-closed stops
  # what the dead SVM can no longer inspect).
  for ((i = 0; i < 500; i++)); do
    state="$(awk '{ print $3 }' "/proc/$old_svm/stat" 2>/dev/null || true)"
    [[ -z "$state" || "$state" == Z ]] && break
    sleep 0.01
  done
  kill_t="$(date +%s.%N)"
  log "SIGKILLed tosec-svm $old_svm; dead at $kill_t after $before echoes"
fi

if [[ "$policy" == closed ]]; then
  # The connection must end (reset or EOF) within 15 s.
  for ((i = 0; i < 150; i++)); do
    [[ -n "$(client_end)" ]] && break
    sleep 0.1
  done
  end="$(client_end)"
  late="$(count_recv_after "$kill_t")"
  ((late == 0)) || fail "fail-closed: $late line(s) sent after the kill were echoed (${end:-the connection is still open})"
  [[ -n "$end" ]] || fail "fail-closed: the connection is still open 15 s after the kill"
  grep -q '^BAD ' "$client_log" && fail "fail-closed: corrupted echo: $(grep -m1 '^BAD ' "$client_log")"
  end_t="$(awk '{ print $2 }' <<<"$end")"
  [[ "$end" == *" reason recv error"* || "$end" == *" reason send error"* || "$end" == *" reason eof" ]] ||
    fail "fail-closed: the connection did not end by reset/EOF: $end"
  after_ms="$(awk -v a="$end_t" -v b="$kill_t" 'BEGIN { printf "%d", (a - b) * 1000 }')"
  log "connection ended ${after_ms} ms after the kill: $end"
  # The guest's side of the stream is reset too (the echo server logs its ECONNRESET).
  for ((i = 0; i < 100; i++)); do
    grep -q 'Errno 104' "$APPS_TMP/echo.log" && break
    sleep 0.1
  done
  grep -q 'Errno 104' "$APPS_TMP/echo.log" ||
    fail "fail-closed: the guest did not see ECONNRESET within 10 s: $(tail -n 2 "$APPS_TMP/echo.log")"
else
  # The connection must go on: 20 echoes of lines sent after the kill, within 20 s.
  for ((i = 0; i < 200; i++)); do
    (($(count_recv_after "$kill_t") >= 20)) && break
    [[ -z "$(client_end)" ]] || break
    sleep 0.1
  done
  late="$(count_recv_after "$kill_t")"
  [[ -z "$(client_end)" ]] || fail "fail-open: the connection ended after the kill: $(client_end) ($late later echoes)"
  ((late >= 20)) || fail "fail-open: only $late echoes of lines sent after the kill within 20 s: $(tail -n1 "$client_log")"
  # The longest gap between consecutive echoes around the kill (informational).
  gap_ms="$(awk '$1 == "RECV" { if (p) { d = $3 - p; if (d > m) m = d } p = $3 } END { printf "%d", m * 1000 }' "$client_log")"
  log "fail-open: $late echoes of later lines; longest gap between echoes ${gap_ms} ms"
  for ((i = 0; i < 100; i++)); do
    grep -q '"svm down: bypass"' "$alerts" && break
    sleep 0.1
  done
  grep -q '"svm down: bypass"' "$alerts" ||
    fail "fail-open: no \"svm down: bypass\" alert line; alerts: $(tail -n 3 "$alerts")"
  cport="$(awk '$1 == "CONNECTED" { print $3 }' "$client_log")"
  grep '"svm down: bypass"' "$alerts" | grep -q "\"src_port\":$cport," ||
    fail "fail-open: no bypass alert for the client's connection (port $cport): $(grep -m1 '"svm down: bypass"' "$alerts")"
  log "alert: $(grep -m1 '"svm down: bypass"' "$alerts" | head -c 300)"
fi

# tosec run restarts the SVM: a new ids tosec-svm under our tosec run (bounded: 30 s).
new_svm=""
for ((i = 0; i < 300; i++)); do
  bg_alive "$run_pid" echo
  new_svm="$(svm_pids | grep -vx "$old_svm" || true)"
  [[ -n "$new_svm" ]] && break
  sleep 0.1
done
[[ "${SVM_KILL_NO_KILL:-0}" == 1 || -n "$new_svm" ]] ||
  fail "the ids SVM was not restarted within 30 s ($(first_error_line "$APPS_TMP/echo.log"))"
kill -0 "$old_svm" 2>/dev/null && [[ "${SVM_KILL_NO_KILL:-0}" != 1 ]] &&
  fail "tosec-svm $old_svm survived SIGKILL"
log "ids SVM restarted: pid ${new_svm:-none}"

fresh_connection fresh-after 15

# The restarted SVM inspects new streams: an attack on a new connection is blocked with an alert
# (retried for up to 15 s: under fail-open, streams opened before the TOE sees the new
# incarnation still bypass it).
attack_ok=""
deadline=$((SECONDS + 15))
while :; do
  n0=$(wc -l <"$alerts")
  run_peer 20 python3 "$APPS_TMP/attack.py" "$HOST_IP" "$port" >"$APPS_TMP/attack.out" 2>&1 || true
  if ! grep -q '^echoed' "$APPS_TMP/attack.out"; then
    for ((i = 0; i < 50; i++)); do
      tail -n +"$((n0 + 1))" "$alerts" | grep -q '"sid:1000002"' && { attack_ok=1; break; }
      sleep 0.1
    done
  fi
  [[ -n "$attack_ok" ]] && break
  ((SECONDS < deadline)) || break
  sleep 0.5
done
[[ -n "$attack_ok" ]] ||
  fail "after the restart, an attack on a new connection was not blocked with alert sid:1000002: $(cat "$APPS_TMP/attack.out")"
log "attack after the restart blocked ($(head -c 100 "$APPS_TMP/attack.out"))"

if [[ "$policy" == open ]]; then
  # The old connection still works after the restart (it keeps bypassing the SVM).
  n="$(nrecv)"
  for ((i = 0; i < 100; i++)); do
    (($(nrecv) >= n + 10)) && break
    [[ -z "$(client_end)" ]] || break
    sleep 0.1
  done
  [[ -z "$(client_end)" ]] || fail "fail-open: the connection ended after the restart: $(client_end)"
  touch "$stop_file"
  for ((i = 0; i < 50; i++)); do
    [[ -n "$(client_end)" ]] && break
    sleep 0.1
  done
  end="$(client_end)"
  [[ "$end" == *" reason stopped" ]] || fail "fail-open: the client did not end cleanly: ${end:-still running}"
  grep -q '^BAD ' "$client_log" && fail "fail-open: corrupted echo: $(grep -m1 '^BAD ' "$client_log")"
fi
stop_bg "$client_pid" 2 >/dev/null
bg_alive "$run_pid" echo
if [[ "$policy" == closed ]]; then
  pass "fail-closed: SVM killed after $before echoes; the connection ended ${after_ms} ms later with no echo of a later line ($end); SVM restarted (pid $new_svm), new connections echo and are inspected again"
else
  pass "fail-open: SVM killed after $before echoes; $(nrecv) lines echoed unchanged on the same connection (longest gap ${gap_ms} ms), bypass alert written, SVM restarted (pid $new_svm), new connections echo and are inspected again"
fi
