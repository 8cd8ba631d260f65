#!/usr/bin/env bash
# app: curl as two guests of one `tosec up` platform, one behind ids | role: guest client, inspected
# Acceptance of a supervised platform with inspection (docs/cli.md `tosec up`, docs/tovm.md
# *Threads*): `tosec up` brings up two guests served by ONE shared tosec-tovm with two worker
# threads ([tovm] mode = "shared", the default), plus the ids SVM that guest "web"'s policy
# selects. From the root namespace (the guest host), curl runs as each guest under
# `tosec run -c CFG --guest NAME` and fetches from python3 http.server in the peer namespace:
#   1. `tosec status --json`: both guests report the same TOE pid, on workers 0 and 1.
#   2. web: a benign page is served intact; a request for /cgi-bin/evil-payload.sh (ids sid
#      1000001) is reset, with an alert naming guest web in <runtime>/logs/eve.json.
#   3. db (no policy): the same request is not inspected and gets the server's 404.
#   4. the ids SVM is SIGKILLed: the supervisor restarts it, and the attack is blocked again.
#   5. `tosec down` leaves no process of the platform behind.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../apps/lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apps/lib/app_steps.sh"
# shellcheck disable=SC2034  # read by the fixture
APPS_SCENARIO="up_chain"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd -P)"
apps_init offloaded
apps_require curl
[[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
rules="$REPO_ROOT/examples/rules/ids.rules"
[[ -f "$rules" ]] || fail "ids rules not found: $rules"

cfg="$APPS_TMP/up.toml"
rt="$APPS_TMP/rt"
# `tosec down` before the fixture's cleanup, whatever happened (set +e: see multi_guest.sh).
trap 'rc=$?; set +e; "$TOSEC" down -c "$cfg" >/dev/null 2>&1; (exit $rc); _apps_cleanup' EXIT
cat >"$cfg" <<TOML
# Written by tests/integration/svm/up_chain.sh
[platform]
runtime_dir = "$rt"

[tovm]
workers = 2

[[guest]]
name = "web"

[[guest]]
name = "db"

[[svm]]
name = "ids"
engine = "ids"
rules = "$rules"

[[chain]]
name = "out"
steps = ["ids"]
fail = "closed"

[[policy]]
guest = "web"
direction = "out"
chain = "out"
TOML

start_peer_www
www=$WWW_DIR
port=$WWW_PORT

"$TOSEC" up -c "$cfg" >"$APPS_TMP/up.out" 2>&1 || fail "tosec up: $(tail -n 5 "$APPS_TMP/up.out")"
log "platform up: $(head -n 1 "$APPS_TMP/up.out")"

# 1. One TOE process, two workers.
"$TOSEC" status -c "$cfg" --json >"$APPS_TMP/status.json" || fail "tosec status --json failed"
/usr/bin/python3 - "$APPS_TMP/status.json" <<'PY' || fail "status: $(cat "$APPS_TMP/status.json")"
import json, sys
guests = {g["guest"]: g for g in json.load(open(sys.argv[1]))["guests"]}
assert set(guests) == {"web", "db"}, guests
assert guests["web"]["pid"] == guests["db"]["pid"], "one shared TOE"
assert sorted([guests["web"]["worker"], guests["db"]["worker"]]) == [0, 1], "two workers"
PY
log "web and db share TOE pid $(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["guests"][0]["pid"])' "$APPS_TMP/status.json") on workers 0 and 1"

url="http://$PEER_IP:$port"
guest_curl() {  # guest_curl GUEST PATH: prints "curl-exit http-code"
  local rc=0 code
  code="$(timeout -k 5 20 "$TOSEC" run -c "$cfg" --guest "$1" -- \
    curl -s -o "$APPS_TMP/body" -w '%{http_code}' --max-time 10 "$url$2" 2>>"$APPS_TMP/curl.err")" ||
    rc=$?
  printf '%s %s\n' "$rc" "${code:-none}"
}
alerts="$rt/logs/eve.json"
expect_blocked() {  # expect_blocked WHAT
  local before=0 r
  [[ -f "$alerts" ]] && before=$(wc -l <"$alerts")
  r="$(guest_curl web /cgi-bin/evil-payload.sh)"
  [[ "$r" != "0 "* ]] || fail "$1: the attack was answered (curl '$r')"
  for _ in $(seq 50); do
    [[ -f "$alerts" ]] && tail -n +"$((before + 1))" "$alerts" | grep -q '"sid:1000001"' && break
    sleep 0.1
  done
  tail -n +"$((before + 1))" "$alerts" | grep '"sid:1000001"' | grep -q '"guest":"web"' ||
    fail "$1: no alert for guest web with sid 1000001 (curl '$r'); alerts: $(tail -n 2 "$alerts" 2>/dev/null)"
  log "$1: attack reset (curl '$r'), alert logged for guest web"
}

# 2. web: benign served intact, attack blocked with an alert.
r="$(guest_curl web /index.html)"
[[ "$r" == "0 200" ]] || fail "web: benign request got '$r': $(tail -n 3 "$APPS_TMP/curl.err")"
cmp -s "$APPS_TMP/body" "$www/index.html" || fail "web: the page arrived changed"
expect_blocked "web"

# 3. db is not inspected: the same request reaches the server (404).
r="$(guest_curl db /cgi-bin/evil-payload.sh)"
[[ "$r" == "0 404" ]] || fail "db: expected the server's 404 (not inspected), got '$r'"
log "db: not inspected (404 from the server)"

# 4. The supervisor restarts a killed SVM; new streams are inspected again.
svm_pid="$(pgrep -f -- "tosec-svm.*$rt/" | head -n 1 || true)"
[[ -n "$svm_pid" ]] || fail "no tosec-svm process of this platform"
kill -KILL "$svm_pid"
for _ in $(seq 100); do
  grep -q "svm ids restarted" "$rt/logs/supervisor.log" && break
  sleep 0.1
done
grep -q "svm ids restarted" "$rt/logs/supervisor.log" ||
  fail "the supervisor did not restart the SVM: $(tail -n 3 "$rt/logs/supervisor.log")"
expect_blocked "after the SVM restart"

# 5. Down leaves nothing behind.
"$TOSEC" down -c "$cfg" >/dev/null || fail "tosec down failed"
for _ in $(seq 50); do
  [[ -z "$(pgrep -f -- "$rt/" || true)" ]] && break
  sleep 0.1
done
[[ -z "$(pgrep -f -- "$rt/" || true)" ]] || fail "processes left after tosec down: $(pgrep -af -- "$rt/")"
pass "tosec up: one shared TOE with 2 workers for 2 guests; web's ids chain blocks (also after an SVM restart), db uninspected; down leaves nothing"
