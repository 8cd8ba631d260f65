#!/usr/bin/env bash
# app: small Python HTTP servers as two guests behind the ids SVM | role: guest servers, inspected
# Acceptance of the security VMs (docs/svm.md): many concurrent streams across several guests
# keep per-stream engine state apart; an attack split across streams is not a false positive.
#
# A config with two guests (g1, g2), one [[svm]] ids (examples/rules/ids.rules), one [[chain]]
# using it and a [[policy]] per guest selecting it for the guest's inbound streams on its port.
# Each guest runs a small threaded HTTP server under its own embedded `tosec run -c CFG --guest
# gN --alerts FILE` (each embedded run gets a private runtime dir; both SVMs append to FILE).
# From the peer namespace one Python client then:
#   1. opens 50 connections per guest (all 100 open at once) and pairs them (same guest and
#      across guests); on every pair, the first half of the ids attack string
#      ("GET /cgi-bin/evil-", sid:1000001) goes on connection A and the second half
#      ("payload.sh HTTP/1.1...") right after it on connection B (which had sent "GET /"
#      before); A then completes its own request ("x HTTP/1.1..."). Every connection carries a
#      valid benign request: all 100 must be answered (404), none reset, and the alert log must
#      have no sid:1000001 line.
#   2. on one new connection per guest, sends the complete attack in two segments of the SAME
#      connection: both must be reset, and the alert log must name sid:1000001 for each guest
#      (field "guest", and the client's port).
#
# MULTI_GUEST_NEGATIVE=1: a negative check of the test itself: one connection of phase 1 sends
# the whole attack on one stream (a true positive), so the test must FAIL.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../apps/lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apps/lib/app_steps.sh"
# shellcheck disable=SC2034  # read by the fixture
APPS_SCENARIO="multi_guest"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd -P)"
PER_GUEST=50
apps_init offloaded
[[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
rules="$REPO_ROOT/examples/rules/ids.rules"
[[ -f "$rules" ]] || fail "ids rules not found: $rules"
# Inside APPS_TMP: removed by the fixture's cleanup. set +e first: under errexit, `(exit $rc)`
# with rc != 0 would end the trap before the cleanup.
alerts="$APPS_TMP/alerts.json"
: >"$alerts"
trap 'rc=$?; set +e; if ((rc != 0 && rc != 77)) && [[ -s "$alerts" ]]; then echo "----- alert log -----" >&2; tail -n 10 "$alerts" >&2; fi; (exit $rc); _apps_cleanup' EXIT

free_port
port1=$FREE_PORT
for _ in 1 2 3 4 5 6 7 8 9 10; do
  free_port
  [[ "$FREE_PORT" != "$port1" ]] && break
done
port2=$FREE_PORT
[[ "$port2" != "$port1" ]] || fail "no second free port"

cfg="$APPS_TMP/multi_guest.toml"
cat >"$cfg" <<TOML
# Written by tests/integration/svm/multi_guest.sh
[platform]
runtime_dir = "$APPS_TMP/rt"

[[guest]]
name = "g1"

[[guest]]
name = "g2"

[[svm]]
name = "ids"
engine = "ids"
rules = "$rules"
workers = 2

[[chain]]
name = "web-in"
steps = ["ids"]
fail = "closed"

[[policy]]
guest = "g1"
direction = "in"
protocol = "tcp"
chain = "web-in"
port = $port1

[[policy]]
guest = "g2"
direction = "in"
protocol = "tcp"
chain = "web-in"
port = $port2
TOML

# The guest server: threaded, a large accept backlog (100 connections arrive at once), HTTP/1.0
# replies (the connection closes after each); "/" and "/index.html" answer 200 with the guest's
# name, everything else 404. Errors on a connection (a reset) are logged.
cat >"$APPS_TMP/server.py" <<'PY'
import http.server, sys

name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path in ("/", "/index.html"):
            body = ("hello from guest %s\n" % name).encode()
            self.send_response(200)
        else:
            body = b"not found\n"
            self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))
        sys.stderr.flush()

class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        print("connection %s: error %s" % (client_address, sys.exc_info()[1]), flush=True)

with Server((host, port), Handler) as srv:
    print("guest %s listening on %s:%d" % (name, host, port), flush=True)
    srv.serve_forever()
PY

# Phase 1 client (see the header). Prints one line per connection
# ("CONN guest idx role port status|error") and a final "SUMMARY ok N of M".
cat >"$APPS_TMP/halves.py" <<'PY'
import os, select, socket, sys, time

host, p1, p2, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
negative = os.environ.get("MULTI_GUEST_NEGATIVE") == "1"
TAIL_B = b"payload.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
TAIL_A = b"x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

def out(*a):
    print(*a, flush=True)

def connect(port):
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

conns = {}  # (guest, idx) -> socket
for g, port in (("g1", p1), ("g2", p2)):
    for i in range(n):
        conns[(g, i)] = connect(port)
out("OPEN", len(conns), "connections")

# Pairs (A gets "GET /cgi-bin/evil-", B gets "payload.sh ..." right after it), with q = n // 4:
# within each guest, idx i (A) with i + q (B) for i < q; across guests, g1[2q + j] (A) with
# g2[3q + j] (B) and g2[2q + j] (A) with g1[3q + j] (B) for j < q; the remaining indices
# (4q .. n-1) pair up within their guest. n = 50: 26 same-guest and 24 cross-guest pairs.
q = n // 4
pairs = []
for g in ("g1", "g2"):
    pairs += [((g, i), (g, i + q)) for i in range(q)]
for j in range(q):
    pairs.append((("g1", 2 * q + j), ("g2", 3 * q + j)))
    pairs.append((("g2", 2 * q + j), ("g1", 3 * q + j)))
for g in ("g1", "g2"):
    rest = list(range(4 * q, n))
    pairs += [((g, rest[k]), (g, rest[k + 1])) for k in range(0, len(rest) - 1, 2)]
role = {}
for a, b in pairs:
    role[a], role[b] = "A", "B"
for key in conns:
    if key not in role:  # an odd one out: a plain benign request
        role[key] = "C"
out("PAIRS %d pairs: %d same-guest, %d cross-guest" % (len(pairs),
    sum(1 for a, b in pairs if a[0] == b[0]), sum(1 for a, b in pairs if a[0] != b[0])))

errors = {}
def send(key, data):
    if key in errors:
        return
    try:
        conns[key].sendall(data)
    except OSError as e:
        errors[key] = "send: %r" % e

for key, r in role.items():
    if r in ("B", "C"):
        send(key, b"GET /")
time.sleep(0.3)
for a, b in pairs:
    send(a, b"GET /cgi-bin/evil-")
    send(b, TAIL_B)
time.sleep(0.3)
for k, (a, b) in enumerate(pairs):
    send(a, TAIL_B if (negative and k == 0) else TAIL_A)
for key, r in role.items():
    if r == "C":
        send(key, b"index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

# Read every reply to EOF (HTTP/1.0: the server closes), bounded by 60 s in all.
data = {key: b"" for key in conns}
pending = {conns[k].fileno(): k for k in conns if k not in errors}
for s in conns.values():
    s.setblocking(False)
deadline = time.monotonic() + 60
while pending and time.monotonic() < deadline:
    r, _, _ = select.select(list(pending), [], [], 1.0)
    for fd in r:
        key = pending[fd]
        try:
            chunk = conns[key].recv(65536)
        except BlockingIOError:
            continue
        except OSError as e:
            errors[key] = "recv: %r" % e
            del pending[fd]
            continue
        if not chunk:
            del pending[fd]
        else:
            data[key] += chunk
for fd, key in pending.items():
    errors[key] = "no EOF within 60 s (got %r)" % data[key][:40]

ok = 0
for key in sorted(conns):
    g, i = key
    port = conns[key].getsockname()[1]
    line = data[key].split(b"\r\n", 1)[0].decode(errors="replace")
    if key in errors:
        out("CONN", g, i, role[key], port, "ERROR", errors[key], "after", repr(data[key][:40]))
    elif line.startswith("HTTP/1.0 404") or line.startswith("HTTP/1.0 200"):
        ok += 1
        out("CONN", g, i, role[key], port, "OK", line)
    else:
        out("CONN", g, i, role[key], port, "BAD", repr(data[key][:60]))
    conns[key].close()
out("SUMMARY ok", ok, "of", len(conns))
sys.exit(0 if ok == len(conns) else 1)
PY

# Phase 2 client: the whole attack in two segments of one connection per guest, both guests at
# once. Prints "ATTACK guest port outcome" (outcome: reset, eof, reply ..., timeout, error ...).
cat >"$APPS_TMP/attack.py" <<'PY'
import socket, sys, time

host, p1, p2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conns = []
for g, port in (("g1", p1), ("g2", p2)):
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conns.append((g, s, s.getsockname()[1]))
outcome = {}
for g, s, _ in conns:
    s.sendall(b"GET /cgi-bin/evil-")
time.sleep(0.3)
for g, s, _ in conns:
    try:
        s.sendall(b"payload.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    except (ConnectionResetError, BrokenPipeError):
        outcome[g] = "reset"
    except OSError as e:
        outcome[g] = "error %r" % e
for g, s, port in conns:
    if g not in outcome:
        try:
            data = s.recv(4096)
            outcome[g] = ("reply %r" % data[:40]) if data else "eof"
        except ConnectionResetError:
            outcome[g] = "reset"
        except socket.timeout:
            outcome[g] = "timeout"
        except OSError as e:
            outcome[g] = "error %r" % e
    print("ATTACK", g, port, outcome[g], flush=True)
    s.close()
PY

# The two guests, each under its own embedded platform.
declare -A srv_pid
for g in g1 g2; do
  p=$port1
  [[ $g == g2 ]] && p=$port2
  start_bg "$g" "$TOSEC" run -c "$cfg" --guest "$g" --embedded --alerts "$alerts" -- \
    /usr/bin/python3 "$APPS_TMP/server.py" "$g" "$HOST_IP" "$p"
  srv_pid[$g]=$BG_PID
done
for g in g1 g2; do
  p=$port1
  [[ $g == g2 ]] && p=$port2
  wait_for_port "$HOST_IP" "$p" 40 "${srv_pid[$g]}" "$g"
  offload_listener_check "$p"
done
offload_watch_start "src $HOST_IP"
log "guests g1 ($HOST_IP:$port1) and g2 ($HOST_IP:$port2) listen through their TOEs"

# benign NAME: each guest answers GET / with its own name (bounded retries: the first request
# after start-up may race the SVM's attach on a loaded machine; a reset is retried, then fails).
benign() {
  local what=$1 g p tries
  for g in g1 g2; do
    p=$port1
    [[ $g == g2 ]] && p=$port2
    for ((tries = 1; ; tries++)); do
      if run_peer 40 curl -sS --max-time 30 -o "$APPS_TMP/$what-$g.body" "http://$HOST_IP:$p/" \
        >"$APPS_TMP/$what-$g.err" 2>&1 && [[ "$(cat "$APPS_TMP/$what-$g.body")" == "hello from guest $g" ]]; then
        break
      fi
      ((tries < 3)) || fail "$what: guest $g did not answer GET / correctly: $(first_error_line "$APPS_TMP/$what-$g.err") body '$(head -c 80 "$APPS_TMP/$what-$g.body" 2>/dev/null)'"
      bg_alive "${srv_pid[$g]}" "$g"
      sleep 1
    done
  done
  log "$what: both guests answer GET / with their own name"
}

apps_require curl
benign first
bg_alive "${srv_pid[g1]}" g1
bg_alive "${srv_pid[g2]}" g2

# Phase 1: the attack string split across streams (all 100 connections open at once).
rc=0
run_peer 90 /usr/bin/python3 "$APPS_TMP/halves.py" "$HOST_IP" "$port1" "$port2" "$PER_GUEST" \
  >"$APPS_TMP/halves.out" 2>&1 || rc=$?
summary="$(grep -m1 '^SUMMARY' "$APPS_TMP/halves.out" || true)"
if ((rc != 0)); then
  grep -v '^CONN .* OK ' "$APPS_TMP/halves.out" | head -n 20 >&2 || true
  fail "halves across streams: not every connection was answered (status $rc): ${summary:-$(first_error_line "$APPS_TMP/halves.out")}; first problem: $(grep -m1 -E '^CONN .* (ERROR|BAD) ' "$APPS_TMP/halves.out" || true)"
fi
want=$((2 * PER_GUEST))
[[ "$summary" == "SUMMARY ok $want of $want" ]] || fail "halves across streams: unexpected summary '$summary'"
grep -q '"sid:1000001"' "$alerts" &&
  fail "halves across streams: false positive, sid:1000001 in the alert log: $(grep -m1 '"sid:1000001"' "$alerts" | head -c 400)"
nalerts=$(wc -l <"$alerts")
pairs_line="$(grep -m1 '^PAIRS' "$APPS_TMP/halves.out" || true)"
log "halves across streams: $want connections answered, none reset (${pairs_line#PAIRS }); $nalerts alert line(s), none sid:1000001"
bg_alive "${srv_pid[g1]}" g1
bg_alive "${srv_pid[g2]}" g2

# Phase 2: the whole attack split across two segments of the same connection, once per guest.
before=$(wc -l <"$alerts")
run_peer 60 /usr/bin/python3 "$APPS_TMP/attack.py" "$HOST_IP" "$port1" "$port2" \
  >"$APPS_TMP/attack.out" 2>&1 || fail "attack client failed: $(first_error_line "$APPS_TMP/attack.out")"
for g in g1 g2; do
  line="$(grep -m1 "^ATTACK $g " "$APPS_TMP/attack.out" || true)"
  [[ -n "$line" ]] || fail "attack on $g: no result: $(first_error_line "$APPS_TMP/attack.out")"
  read -r _ _ cport outcome <<<"$line"
  [[ "$outcome" == reset ]] || fail "attack on $g (client port $cport): expected a reset, got: $outcome"
  found=""
  for ((i = 0; i < 150; i++)); do
    if tail -n +"$((before + 1))" "$alerts" | grep '"sid:1000001"' | grep "\"guest\":\"$g\"" |
      grep -q "\"src_port\":$cport,"; then
      found=1
      break
    fi
    sleep 0.1
  done
  [[ -n "$found" ]] ||
    fail "attack on $g: no alert with sid:1000001, guest $g and src_port $cport within 15 s; new alerts: $(tail -n +"$((before + 1))" "$alerts" | head -n 3)"
  log "attack on $g reset; alert: $(tail -n +"$((before + 1))" "$alerts" | grep '"sid:1000001"' | grep -m1 "\"guest\":\"$g\"" | head -c 300)"
done

benign after
bg_alive "${srv_pid[g1]}" g1
bg_alive "${srv_pid[g2]}" g2
offload_watch_check
pass "two guests behind ids: $want concurrent connections with the attack string split across streams (${pairs_line#PAIRS }) all answered, no sid:1000001; the attack split within one stream reset on g1 and g2 with an alert naming each guest${OFFLOAD_NOTE}"
