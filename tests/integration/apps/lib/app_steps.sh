# shellcheck shell=bash
# shellcheck disable=SC2034  # globals set here are read by the scenario scripts
# Steps that several application scenarios (tests/integration/apps/*.sh) share, on top of the
# namespace fixture lib/netns.sh (sourced here): a scenario sources this file instead and states
# only what is its own (which application is the guest, which side runs what).

if [[ -n "${TOSEC_APPS_STEPS_SH_LOADED:-}" ]]; then
  return 0
fi
TOSEC_APPS_STEPS_SH_LOADED=1
# shellcheck source-path=SCRIPTDIR source=netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns.sh"

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------
# guest_server_ready NAME PORT: the guest server just started with start_guest_bg (BG_PID)
# listens on HOST_IP:PORT; in offloaded mode its listener belongs to the TOE, and the offload
# watch samples its connections from then on. Sets GUEST_SRV to its pid.
GUEST_SRV=""
guest_server_ready() {
  local name=$1 port=$2
  GUEST_SRV=$BG_PID
  wait_for_port "$HOST_IP" "$port" 20 "$GUEST_SRV" "$name"
  offload_listener_check "$port"
  offload_watch_start "src $HOST_IP"
}

# start_redis {guest|peer} IP PORT: redis-server (no persistence, data in $APPS_TMP/redis) as the
# guest application or in the peer, bound to IP:PORT, as background process "redis"; waits until
# it listens (a guest one via guest_server_ready). Sets REDIS_SRV to its pid.
REDIS_SRV=""
start_redis() {
  local where=$1 ip=$2 port=$3
  local cmd=(redis-server --port "$port" --bind "$ip" --save '' --appendonly no
    --protected-mode no --daemonize no --dir "$APPS_TMP/redis")
  mkdir -p "$APPS_TMP/redis"
  if [[ "$where" == guest ]]; then
    start_guest_bg redis "${cmd[@]}"
    guest_server_ready redis "$port"
  else
    start_bg redis --peer "${cmd[@]}"
    wait_for_port --peer "$ip" "$port" 10 "$BG_PID" redis
  fi
  REDIS_SRV=$BG_PID
}

# redis_round_trip_and_benchmark {guest|peer} IP PORT: from that side, redis-cli SETs a random
# value and GETs it back (fails unless it is the same), then `redis-benchmark -t set,get -n
# 20000` (50 parallel connections) must report positive requests/s for both. Sets REDIS_RESULT
# ("SET=.../s GET=.../s").
REDIS_RESULT=""
redis_round_trip_and_benchmark() {
  local where=$1 ip=$2 port=$3 val t rps res=()
  val="v-$$-$RANDOM"
  check_run redis-set 20 "$where" redis-cli -h "$ip" -p "$port" SET tosec:key "$val"
  check_run redis-get 20 "$where" redis-cli -h "$ip" -p "$port" GET tosec:key
  expect_content "$APPS_TMP/redis-get.out" "$val" "GET returned"
  check_run redis-benchmark 120 "$where" redis-benchmark -h "$ip" -p "$port" -t set,get -n 20000 --csv
  for t in SET GET; do
    rps="$(awk -F'"' -v t="$t" '$2 == t { print $4 }' "$APPS_TMP/redis-benchmark.out")"
    is_positive "$rps" || fail "redis-benchmark: no positive $t requests/s: $(first_error_line "$APPS_TMP/redis-benchmark.out")"
    res+=("$t=${rps}/s")
  done
  REDIS_RESULT="${res[*]}"
}

# peer_web_site: nginx (master + 2 workers) in the peer on PEER_IP:PEER_WEB_PORT serving
# index.html ("hello from H2 <pid>", see PEER_PAGE) and a 16 MiB random big.bin; waits until it
# listens. Sets PEER_WEB_URL (without a trailing /) and PEER_BIG_SUM (big.bin's sha256).
PEER_WEB_PORT=8080 # in the peer namespace (our own), so a fixed port cannot collide
PEER_PAGE="hello from H2 $$"
PEER_WEB_URL=""
PEER_BIG_SUM=""
peer_web_site() {
  local port=$PEER_WEB_PORT web="$APPS_TMP/nginx"
  write_nginx_conf "$web" "$PEER_IP:$port" 2
  PEER_BIG_SUM="$(make_random_file "$web/www/big.bin" 16)"
  printf '%s\n' "$PEER_PAGE" >"$web/www/index.html"
  start_nginx nginx "$web" peer
  wait_for_port --peer "$PEER_IP" "$port" 10 "$BG_PID" nginx
  PEER_WEB_URL="http://$PEER_IP:$port"
}

# ---------------------------------------------------------------------------------------------
# Checks on what a client received
# ---------------------------------------------------------------------------------------------
# expect_content FILE EXPECTED WHAT: fail unless FILE holds EXPECTED (trailing newlines aside);
# the message starts with WHAT, e.g. "index.html content differs:".
expect_content() {
  local file=$1 want=$2 what=$3
  [[ "$(cat "$file")" == "$want" ]] || fail "$what '$(head -c 100 "$file")', expected '$want'"
}

# expect_sha FILE SUM NAME: fail unless FILE (a copy of NAME, for the message) has sha256 SUM.
expect_sha() {
  local file=$1 sum=$2 name=$3 got
  got="$(sha_of "$file")"
  [[ "$got" == "$sum" ]] ||
    fail "$name checksum differs: got $got ($(stat -c %s "$file") bytes), expected $sum"
}

# Serves a one-page site ("hello from the peer") from the peer namespace with python3's
# http.server on a free port. Sets WWW_DIR (the served directory) and WWW_PORT.
start_peer_www() {
  WWW_DIR="$APPS_TMP/www"
  mkdir -p "$WWW_DIR"
  printf 'hello from the peer\n' >"$WWW_DIR/index.html"
  free_port
  WWW_PORT=$FREE_PORT
  start_bg www --peer /usr/bin/python3 -m http.server "$WWW_PORT" --bind "$PEER_IP" --directory "$WWW_DIR"
  wait_for_port --peer "$PEER_IP" "$WWW_PORT" 15 "$BG_PID" www
}
