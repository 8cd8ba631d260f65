#!/usr/bin/env bash
# app: redis-server | role: guest server
# redis-server (epoll, non-blocking) is the guest application; redis-cli checks a SET/GET round trip
# from the peer and `redis-benchmark -t set,get -n 20000` runs from the peer.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
apps_require redis-server redis-cli redis-benchmark
free_port
port=$FREE_PORT
mkdir -p "$APPS_TMP/redis"
start_guest_bg redis redis-server --port "$port" --bind "$HOST_IP" --save '' --appendonly no \
  --protected-mode no --daemonize no --dir "$APPS_TMP/redis"
srv=$BG_PID
wait_for_port "$HOST_IP" "$port" 20 "$srv" redis
offload_listener_check "$port"
offload_watch_start "src $HOST_IP"
val="v-$$-$RANDOM"
check_run redis-set 20 peer redis-cli -h "$HOST_IP" -p "$port" SET tosec:key "$val"
check_run redis-get 20 peer redis-cli -h "$HOST_IP" -p "$port" GET tosec:key
[[ "$(cat "$APPS_TMP/redis-get.out")" == "$val" ]] ||
  fail "GET returned '$(head -c 100 "$APPS_TMP/redis-get.out")', expected '$val'"
check_run redis-benchmark 120 peer redis-benchmark -h "$HOST_IP" -p "$port" -t set,get -n 20000 --csv
res=()
for t in SET GET; do
  rps="$(awk -F'"' -v t="$t" '$2 == t { print $4 }' "$APPS_TMP/redis-benchmark.out")"
  is_positive "$rps" || fail "redis-benchmark: no positive $t requests/s: $(first_error_line "$APPS_TMP/redis-benchmark.out")"
  res+=("$t=${rps}/s")
done
bg_alive "$srv" redis
offload_watch_check
pass "redis-cli SET/GET ok; redis-benchmark -n 20000 ${res[*]}$OFFLOAD_NOTE"
