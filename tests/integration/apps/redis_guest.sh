#!/usr/bin/env bash
# app: redis-server | role: guest server
# redis-server (epoll, non-blocking) is the guest application; redis-cli checks a SET/GET round trip
# from the peer and `redis-benchmark -t set,get -n 20000` runs from the peer.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/app_steps.sh"
apps_init "$@"
apps_require redis-server redis-cli redis-benchmark
free_port
port=$FREE_PORT
start_redis guest "$HOST_IP" "$port"
redis_round_trip_and_benchmark peer "$HOST_IP" "$port"
bg_alive "$REDIS_SRV" redis
offload_watch_check
pass "redis-cli SET/GET ok; redis-benchmark -n 20000 $REDIS_RESULT$OFFLOAD_NOTE"
