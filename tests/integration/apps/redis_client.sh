#!/usr/bin/env bash
# app: redis-benchmark, redis-cli | role: guest client
# redis-server runs in the peer; redis-cli (SET/GET round trip) and
# `redis-benchmark -t set,get -n 20000` (50 parallel connections) are the guest applications.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
apps_require redis-server redis-cli redis-benchmark
port=6379
mkdir -p "$APPS_TMP/redis"
start_bg redis --peer redis-server --port "$port" --bind "$PEER_IP" --save '' --appendonly no \
  --protected-mode no --daemonize no --dir "$APPS_TMP/redis"
srv=$BG_PID
wait_for_port --peer "$PEER_IP" "$port" 10 "$srv" redis
val="v-$$-$RANDOM"
offload_watch_start "dst $PEER_IP"
check_run redis-set 20 guest redis-cli -h "$PEER_IP" -p "$port" SET tosec:key "$val"
check_run redis-get 20 guest redis-cli -h "$PEER_IP" -p "$port" GET tosec:key
[[ "$(cat "$APPS_TMP/redis-get.out")" == "$val" ]] ||
  fail "GET returned '$(head -c 100 "$APPS_TMP/redis-get.out")', expected '$val'"
check_run redis-benchmark 120 guest redis-benchmark -h "$PEER_IP" -p "$port" -t set,get -n 20000 --csv
res=()
for t in SET GET; do
  rps="$(awk -F'"' -v t="$t" '$2 == t { print $4 }' "$APPS_TMP/redis-benchmark.out")"
  is_positive "$rps" || fail "redis-benchmark: no positive $t requests/s: $(first_error_line "$APPS_TMP/redis-benchmark.out")"
  res+=("$t=${rps}/s")
done
bg_alive "$srv" redis
offload_watch_check
pass "redis-cli SET/GET ok; redis-benchmark -n 20000 ${res[*]}$OFFLOAD_NOTE"
