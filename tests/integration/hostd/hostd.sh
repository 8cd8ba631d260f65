#!/usr/bin/env bash
# app: curl as a guest of a `tosec up` platform run by tosec-hostd | role: guest client, inspected
# Acceptance of the host daemon (docs/control-plane.md "tosec-hostd", docs/cli.md): `tosec up`
# starts tosec-hostd, which supervises one guest "web" behind the ids SVM and one guest "db";
# every command below is a gRPC call to it:
#   1. hostd.sock is mode 0600; `status` shows the daemon's roles; status/stats --json parse.
#   2. web: a benign page via curl under the shim; the attack is reset; `tosec alerts --json`
#      (StreamAlerts backlog) and a running `tosec alerts --follow` both show the alert.
#   3. live changes: invalid ones fail with the right exit code and a message naming the field
#      (unknown svm 2, unknown policy 2, SVM that does not run / guest without inspection 1);
#      `policy rm` bumps the generation and rewrites web's topology file; with a TOE that reloads
#      on SIGHUP the attack then passes (404), otherwise the reply warns and the test says so;
#      `policy add` restores it.
#   4. /metrics: scraped with curl, every line parses as exposition format 0.0.4, the expected
#      families are there with their types and labels.
#   5. `tosec down` leaves no process, socket or shm object behind.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../apps/lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apps/lib/app_steps.sh"
# shellcheck disable=SC2034  # read by the fixture
APPS_SCENARIO="hostd"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd -P)"
apps_init offloaded
apps_require curl
[[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
rules="$REPO_ROOT/examples/rules/ids.rules"
[[ -f "$rules" ]] || fail "ids rules not found: $rules"
bindir="$(dirname "$TOSEC")"
[[ -x "$bindir/tosec-hostd" ]] || fail "tosec-hostd is not built next to $TOSEC"

cfg="$APPS_TMP/up.toml"
rt="$APPS_TMP/rt"
follow_pid=""
trap 'rc=$?; set +e; [[ -n "$follow_pid" ]] && kill "$follow_pid" 2>/dev/null; "$TOSEC" down -c "$cfg" >/dev/null 2>&1; (exit $rc); _apps_cleanup' EXIT
# A free port below the kernel's ephemeral range (ip_local_port_range), so that no connection
# made before tosec-hostd binds it (curl, the TOE's) can take it meanwhile.
mport="$(/usr/bin/python3 -c '
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for p in random.sample(range(max(1024, low - 12000), low), 200):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
')"
[[ -n "$mport" ]] || fail "no free port below the ephemeral range for the metrics listener"
cat >"$cfg" <<TOML
# Written by tests/integration/hostd/hostd.sh
[platform]
runtime_dir = "$rt"

[host]
metrics_listen = "127.0.0.1:$mport"

[[guest]]
name = "web"

[[guest]]
name = "db"

[[svm]]
name = "ids"
engine = "ids"
rules = "$rules"

[[svm]]
name = "waf"
engine = "waf"

[[chain]]
name = "out"
steps = ["ids"]

[[policy]]
guest = "web"
direction = "out"
chain = "out"
TOML

start_peer_www
port=$WWW_PORT

"$TOSEC" up -c "$cfg" >"$APPS_TMP/up.out" 2>&1 || fail "tosec up: $(tail -n 5 "$APPS_TMP/up.out")"
log "platform up: $(head -n 1 "$APPS_TMP/up.out")"

# 1. The daemon, its socket and its roles.
[[ -S "$rt/hostd.sock" ]] || fail "no $rt/hostd.sock"
[[ "$(stat -c %a "$rt/hostd.sock")" == 600 ]] || fail "hostd.sock mode $(stat -c %a "$rt/hostd.sock")"
hostd_pid="$(cat "$rt/supervisor.pid")"
grep -q tosec-hostd "/proc/$hostd_pid/cmdline" || fail "pid $hostd_pid is not tosec-hostd"
"$TOSEC" status -c "$cfg" >"$APPS_TMP/status.txt" || fail "tosec status failed"
grep -q "^hostd: pid $hostd_pid, up, topology generation 1" "$APPS_TMP/status.txt" ||
  fail "status: no hostd line: $(cat "$APPS_TMP/status.txt")"
grep -Eq '^web\.svm\.ids +svm +running' "$APPS_TMP/status.txt" ||
  fail "status: no running web.svm.ids role: $(cat "$APPS_TMP/status.txt")"
for c in "status --json" "stats" "stats --json" "topology --json"; do
  # shellcheck disable=SC2086
  "$TOSEC" $c -c "$cfg" >"$APPS_TMP/out.json" || fail "tosec $c failed"
  /usr/bin/python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$APPS_TMP/out.json" ||
    fail "tosec $c: not JSON: $(head -c 300 "$APPS_TMP/out.json")"
done
log "hostd pid $hostd_pid: socket 0600, roles listed, --json outputs parse"

url="http://$PEER_IP:$port"
guest_curl() {  # guest_curl GUEST PATH: prints "curl-exit http-code"
  local rc=0 code
  code="$(timeout -k 5 20 "$TOSEC" run -c "$cfg" --guest "$1" -- \
    curl -s -o "$APPS_TMP/body" -w '%{http_code}' --max-time 10 "$url$2" 2>>"$APPS_TMP/curl.err")" ||
    rc=$?
  printf '%s %s\n' "$rc" "${code:-none}"
}

# 2. Inspection, alerts through the daemon.
"$TOSEC" alerts -c "$cfg" --follow --json >"$APPS_TMP/follow.out" 2>&1 &
follow_pid=$!
r="$(guest_curl web /index.html)"
[[ "$r" == "0 200" ]] || fail "web: benign request got '$r': $(tail -n 3 "$APPS_TMP/curl.err")"
r="$(guest_curl web /cgi-bin/evil-payload.sh)"
[[ "$r" != "0 "* ]] || fail "web: the attack was answered (curl '$r')"
for _ in $(seq 100); do
  grep -q '"sid:1000001"' "$APPS_TMP/follow.out" && break
  sleep 0.1
done
grep -q '"sid:1000001"' "$APPS_TMP/follow.out" ||
  fail "alerts --follow showed no alert: $(tail -n 3 "$APPS_TMP/follow.out")"
kill "$follow_pid"
wait "$follow_pid" 2>/dev/null || true
follow_pid=""
"$TOSEC" alerts -c "$cfg" --json >"$APPS_TMP/alerts.json" || fail "tosec alerts --json failed"
/usr/bin/python3 - "$APPS_TMP/alerts.json" <<'PY' || fail "alerts --json: $(cat "$APPS_TMP/alerts.json")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert any(a.get("guest") == "web" and "1000001" in json.dumps(a) for a in lines), lines
PY
"$TOSEC" alerts -c "$cfg" | grep -q "BLOCKED web ids" || fail "tosec alerts: no BLOCKED line"
log "attack reset; the alert came through StreamAlerts (backlog and --follow)"

# 3. Live changes.
expect_exit() {  # expect_exit CODE TEXT ARGS...: the command fails with CODE and says TEXT
  local want=$1 text=$2 rc=0
  shift 2
  "$TOSEC" "$@" -c "$cfg" >"$APPS_TMP/chg.out" 2>"$APPS_TMP/chg.err" || rc=$?
  [[ $rc == "$want" ]] || fail "tosec $*: exit $rc, expected $want: $(cat "$APPS_TMP/chg.err")"
  grep -q -- "$text" "$APPS_TMP/chg.err" || fail "tosec $*: no '$text' in: $(cat "$APPS_TMP/chg.err")"
}
expect_exit 2 'no svm "nosuch"' chain set out nosuch
expect_exit 1 'svm "waf" does not run for guest "web"' chain set out ids,waf
expect_exit 2 'NOT_FOUND: policy "nope"' policy rm nope
expect_exit 1 'guest "db" has no inspection region' policy add dbp --guest db --chain out
expect_exit 2 'is not a port' policy add x --guest web --chain out --port 99999
gen_before="$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("generation", 0))' "$APPS_TMP/out.json")"
[[ "$gen_before" == 1 ]] || fail "generation after rejected changes: $gen_before, expected 1"
topo_sum="$(md5sum <"$rt/guests/web/topology.pb")"
"$TOSEC" policy rm policy-1 -c "$cfg" --json >"$APPS_TMP/rm.json" 2>"$APPS_TMP/rm.err" ||
  fail "policy rm policy-1: $(cat "$APPS_TMP/rm.err")"
/usr/bin/python3 - "$APPS_TMP/rm.json" <<'PY' || fail "policy rm --json: $(cat "$APPS_TMP/rm.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ok"] is True and r["generation"] == 2, r
PY
[[ "$(md5sum <"$rt/guests/web/topology.pb")" != "$topo_sum" ]] || fail "web's topology file unchanged"
"$TOSEC" topology -c "$cfg" --json >"$APPS_TMP/topo.json"
/usr/bin/python3 - "$APPS_TMP/topo.json" <<'PY' || fail "topology after rm: $(cat "$APPS_TMP/topo.json")"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["generation"] == "2" or t["generation"] == 2, t
assert not t.get("policies"), t
PY
if grep -q '"topology_generation"' <("$TOSEC" status -c "$cfg" --json); then
  r="$(guest_curl web /cgi-bin/evil-payload.sh)"
  [[ "$r" == "0 404" ]] || fail "after policy rm the attack should pass uninspected (404), got '$r'"
  log "live: policy removed, the TOE reloaded generation 2, new streams are not inspected"
else
  grep -q "does not reload live" "$APPS_TMP/rm.json" ||
    fail "a TOE without reload must be reported as a warning: $(cat "$APPS_TMP/rm.json")"
  log "live: this tosec-tovm has no SIGHUP reload yet: file and generation checked, the reply warns"
fi
"$TOSEC" policy add web-out -c "$cfg" --guest web --chain out --direction out >"$APPS_TMP/add.out" 2>&1 ||
  fail "policy add: $(cat "$APPS_TMP/add.out")"
grep -q "generation 3" "$APPS_TMP/add.out" || fail "policy add: $(cat "$APPS_TMP/add.out")"
r="$(guest_curl web /cgi-bin/evil-payload.sh)"
[[ "$r" != "0 "* ]] || fail "after policy add the attack was answered (curl '$r')"
log "live: policy web-out added (generation 3), the attack is reset again"

# 4. Prometheus metrics.
curl -s --max-time 10 "http://127.0.0.1:$mport/metrics" >"$APPS_TMP/metrics.txt" ||
  fail "cannot scrape http://127.0.0.1:$mport/metrics"
/usr/bin/python3 - "$APPS_TMP/metrics.txt" <<'PY' || fail "metrics: $(head -n 20 "$APPS_TMP/metrics.txt")"
import re, sys
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')
types, names = {}, set()
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split(" ")
        assert name not in types, "TYPE twice: " + name
        assert kind in ("counter", "gauge", "histogram"), line
        types[name] = kind
        continue
    if line.startswith("# HELP") or not line:
        continue
    m = sample.match(line)
    assert m, "bad line: " + line
    float(m.group(4))
    base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
    assert m.group(1) in types or base in types, "no TYPE for " + line
    names.add(line.split(" ")[0])
for want in ('tosec_hostd_up', 'tosec_topology_generation',
             'tosec_guest_sockets{guest="web",state="open"}',
             'tosec_guest_bytes_from_guest_total{guest="web"}',
             'tosec_role_restarts_total{role="web.svm.ids",kind="svm"}'):
    assert want in names, want + " missing"
assert types["tosec_guest_bytes_from_guest_total"] == "counter"
PY
log "metrics: $(grep -c '^tosec_' "$APPS_TMP/metrics.txt") samples parse, expected families present"

# 5. Down leaves nothing behind.
"$TOSEC" down -c "$cfg" >/dev/null || fail "tosec down failed"
for _ in $(seq 50); do
  [[ -z "$(pgrep -f -- "$rt/" || true)" ]] && break
  sleep 0.1
done
[[ -z "$(pgrep -f -- "$rt/" || true)" ]] || fail "processes left after tosec down: $(pgrep -af -- "$rt/")"
[[ ! -e "$rt/hostd.sock" ]] || fail "hostd.sock left behind"
ls /dev/shm | grep -q "tosec-web-" && fail "shm object left: $(ls /dev/shm | grep tosec-web-)"
pass "tosec-hostd: gRPC status/stats/alerts/topology, live policy changes and their errors, /metrics, down leaves nothing"
