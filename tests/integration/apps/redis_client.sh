#!/usr/bin/env bash
# app: redis-benchmark, redis-cli | role: guest client
# redis-server runs in the peer; redis-cli (SET/GET round trip) and
# `redis-benchmark -t set,get -n 20000` (50 parallel connections) are the guest applications.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/app_steps.sh"
apps_init "$@"
apps_require redis-server redis-cli redis-benchmark
port=6379
start_redis peer "$PEER_IP" "$port"
offload_watch_start "dst $PEER_IP"
redis_round_trip_and_benchmark guest "$PEER_IP" "$port"
bg_alive "$REDIS_SRV" redis
offload_watch_check
pass "redis-cli SET/GET ok; redis-benchmark -n 20000 $REDIS_RESULT$OFFLOAD_NOTE"
