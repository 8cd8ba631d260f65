#!/usr/bin/env bash
# app: python3 -m http.server behind an SVM chain | role: guest server, inspected
# Acceptance of the security VMs (docs/svm.md): the guest web server runs under
# `tosec run --chain CHAIN`; curl and a raw-socket client in the peer namespace send benign
# requests (must pass with the right content) and attacks (must be blocked: the connection is
# reset, the alert log names the rule), then a benign request again (must work).
#
# Usage: web_chain.sh sequential|parallel   (chain ids,waf,av or ids+waf+av)
# WEB_CHAIN_ALERTS_OUT=FILE keeps a copy of the alert log (scripts/demo shows it).
set -euo pipefail
layout=${1:-sequential}
case "$layout" in
  sequential) chain="ids,waf,av" ;;
  parallel) chain="ids+waf+av" ;;
  *) echo "usage: $0 sequential|parallel" >&2; exit 2 ;;
esac
alerts="$(mktemp /tmp/tosec-svm-alerts.XXXXXX)"
export TOSEC_RUN_ARGS="--chain $chain --alerts $alerts"
# shellcheck source-path=SCRIPTDIR source=../apps/lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apps/lib/app_steps.sh"
APPS_SCENARIO="web_chain_$layout"
apps_init offloaded
apps_require curl
[[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
trap 'rc=$?; set +e; rm -f "$alerts"; (exit $rc); _apps_cleanup' EXIT

free_port
port=$FREE_PORT
www="$APPS_TMP/www"
mkdir -p "$www"
printf 'hello from the inspected guest %s\n' "$$" >"$www/index.html"
# The EICAR test file, assembled here so that no file of the repository contains it.
eicar_a='X5O!P%@AP[4\PZX54(P^)7CC)7}$'
eicar_b='EICAR-STANDARD-ANTIVIRUS'
eicar_c='-TEST-FILE!$H+H*'
printf '%s%s%s' "$eicar_a" "$eicar_b" "$eicar_c" >"$www/eicar.txt"
start_guest_bg http /usr/bin/python3 -m http.server "$port" --bind "$HOST_IP" --directory "$www"
guest_server_ready http "$port"
base="http://$HOST_IP:$port"

# blocked NAME RULE_REGEX CURL_ARGS...: the request must fail (reset, no HTTP 200) and a new
# alert line must match RULE_REGEX.
blocked() {
  local name=$1 rule=$2 rc=0 before
  shift 2
  before=$(wc -l <"$alerts")
  run_peer 20 curl -sS --max-time 10 -o "$APPS_TMP/$name.body" -w '%{http_code}' "$@" \
    >"$APPS_TMP/$name.code" 2>"$APPS_TMP/$name.err" || rc=$?
  local code
  code=$(cat "$APPS_TMP/$name.code" 2>/dev/null || true)
  if [[ $rc -eq 0 && "$code" == 200 ]]; then
    fail "$name: the attack was served (HTTP 200)"
  fi
  for _ in $(seq 50); do
    (($(wc -l <"$alerts") > before)) && tail -n +"$((before + 1))" "$alerts" | grep -Eq "$rule" && break
    sleep 0.1
  done
  tail -n +"$((before + 1))" "$alerts" | grep -Eq "$rule" ||
    fail "$name: no alert matching /$rule/ (curl status $rc, http '$code'); alerts: $(tail -n 3 "$alerts")"
  log "$name blocked (curl status $rc: $(head -c 120 "$APPS_TMP/$name.err"))"
}

benign() {
  check_run "benign-$1" 30 peer curl -sS --fail --max-time 20 -o "$APPS_TMP/benign-$1.html" "$base/index.html"
  expect_content "$APPS_TMP/benign-$1.html" "hello from the inspected guest $$" "index.html differs:"
}

benign first
blocked sqli-query '"942[0-9]{3}"|"949110"' "$base/index.html?id=1'%20OR%20'1'='1"
blocked xss-query '"941[0-9]{3}"' "$base/index.html?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
blocked sqli-post '"942[0-9]{3}"' --data "user=admin'--&pass=x' or 1=1--" "$base/index.html"
blocked xss-post '"941[0-9]{3}"' --data "comment=<script>alert(document.cookie)</script>" "$base/index.html"
blocked traversal '"930[0-9]{3}"|sid:10000' --path-as-is "$base/../../../../etc/passwd"
blocked eicar 'EICAR' "$base/eicar.txt"

# An attack string split across two TCP segments (two writes, 300 ms apart, TCP_NODELAY).
before=$(wc -l <"$alerts")
run_peer 20 python3 - "$HOST_IP" "$port" >"$APPS_TMP/split.out" 2>&1 <<'PY' || true
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(b"GET /cgi-bin/evil-")
time.sleep(0.3)
try:
    s.sendall(b"payload.sh HTTP/1.1\r\nHost: x\r\n\r\n")
    data = s.recv(4096)
    print("reply:", data[:40])
except OSError as e:
    print("error:", e)
PY
for _ in $(seq 50); do
  tail -n +"$((before + 1))" "$alerts" | grep -q '"sid:1000001"' && break
  sleep 0.1
done
tail -n +"$((before + 1))" "$alerts" | grep -q '"sid:1000001"' ||
  fail "split attack: no alert for sid 1000001; client said: $(cat "$APPS_TMP/split.out")"
grep -q "reply: b'HTTP" "$APPS_TMP/split.out" && fail "split attack: the server answered"

# Per-stream state stays apart: the two halves of the attack on two concurrent connections are
# not an attack (both requests are answered, 404).
run_peer 20 python3 - "$HOST_IP" "$port" >"$APPS_TMP/halves.out" 2>&1 <<'PY' || true
import socket, sys, time
a = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
b = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
for s in (a, b):
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
a.sendall(b"GET /cgi-bin/evil-")
time.sleep(0.2)
b.sendall(b"GET /payload.sh HTTP/1.1\r\nHost: x\r\n\r\n")
a.sendall(b"x HTTP/1.1\r\nHost: x\r\n\r\n")
for name, s in (("a", a), ("b", b)):
    try:
        print(name, s.recv(64)[:12])
    except OSError as e:
        print(name, "error", e)
PY
grep -q "^a b'HTTP/1.0 4" "$APPS_TMP/halves.out" && grep -q "^b b'HTTP/1.0 4" "$APPS_TMP/halves.out" ||
  fail "two halves on two streams: expected both answered; got: $(tr '\n' ' ' <"$APPS_TMP/halves.out")"

benign after
bg_alive "$GUEST_SRV" http
n=$(wc -l <"$alerts")
if [[ -n "${WEB_CHAIN_ALERTS_OUT:-}" ]]; then cp "$alerts" "$WEB_CHAIN_ALERTS_OUT"; fi
pass "chain $chain: benign requests served; SQLi/XSS (query and body), traversal, EICAR and a split attack blocked with $n alert lines; halves on two streams not blocked"
