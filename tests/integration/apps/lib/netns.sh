# shellcheck shell=bash
# shellcheck disable=SC2034  # globals set here are read by the scenario scripts
# Fixture for the application acceptance tests (tests/integration/apps/*.sh).
#
# Topology, created per run and removed on exit (also on failure or a signal):
#
#   root namespace ("guest host")                 peer namespace "H2" (tosec-apps-<pid>)
#   tosec run + TOE + guest application           kernel stack, the other end of each test
#   veth tsa<pid>h  10.203.X.1/24  <---------->   veth tsa<pid>p  10.203.X.2/24
#
# X is chosen per run among 1..254 so that the /24 is not used by anything else on the host.
# Traffic only flows over this veth pair (and the peer's loopback); nothing else is touched.
#
# Usage in a scenario script:
#   #!/usr/bin/env bash
#   # app: netperf TCP_RR | role: guest client
#   set -euo pipefail
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
#   apps_init "$@"                      # MODE = kernel | offloaded; sets traps, creates the netns
#   apps_require netperf netserver      # SKIP (exit 77) when a tool is missing
#   start_bg server --peer netserver -D -p 12865 -L "$PEER_IP"
#   wait_for_port --peer "$PEER_IP" 12865 10
#   run_guest 30 netperf -H "$PEER_IP" ...   # kernel: directly; offloaded: "$TOSEC run -- ..."
#   pass "..."
#
# Results: the last line a scenario prints is "PASS: ...", "FAIL: ..." or "SKIP: ..." (exit 0,
# 1, 77). scripts/compat-matrix reads these lines.
#
# Environment:
#   TOSEC            path of the tosec CLI (offloaded mode; CMake passes $<TARGET_FILE:tosec>)
#   TOSEC_CONFIG     optional config file, passed as `tosec run -c TOSEC_CONFIG`
#   TOSEC_RUN_ARGS   optional extra arguments for `tosec run` (word-split), before `--`
#   APPS_KEEP_TMP=1  keep the per-run temporary directory (logs, configs) for debugging
#   APPS_VERBOSE=1   echo every command the fixture runs

if [[ -n "${TOSEC_APPS_NETNS_SH_LOADED:-}" ]]; then
  return 0
fi
TOSEC_APPS_NETNS_SH_LOADED=1

APPS_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
APPS_SCENARIO="$(basename "${BASH_SOURCE[-1]:-$0}" .sh)"
APPS_MODE=""
APPS_NS=""
APPS_VETH_HOST=""
APPS_VETH_PEER=""
APPS_TMP=""
APPS_PIDS=()    # process-group leaders started by start_bg (we kill only these, by id)
APPS_BG_NAMES=() # their names (for log dumps)
APPS_RESULT_PRINTED=0
APPS_OUT_FD=1
APPS_ERR_FD=2
HOST_IP=""
PEER_IP=""
GUEST_PREFIX=() # argv prefix that runs a command as a guest application in the current mode
BG_PID=""

# ---------------------------------------------------------------------------------------------
# Messages and results
# ---------------------------------------------------------------------------------------------
log() { printf '[%s %s/%s] %s\n' "$(date +%H:%M:%S)" "$APPS_SCENARIO" "${APPS_MODE:-?}" "$*" >&2; }

pass() {
  APPS_RESULT_PRINTED=1
  printf 'PASS: %s\n' "$*"
  exit 0
}
fail() {
  APPS_RESULT_PRINTED=1
  printf 'FAIL: %s\n' "$*"
  exit 1
}
skip() {
  APPS_RESULT_PRINTED=1
  printf 'SKIP: %s\n' "$*"
  exit 77
}

# first_error_line FILE: the first line that looks like an error, else the last non-empty line.
first_error_line() {
  local f=$1 line
  [[ -s "$f" ]] || { printf '(no output)\n'; return 0; }
  line="$(grep -m1 -iE 'error|fail|fatal|refused|denied|cannot|can.t|unable|abort|not supported|unsupported|no such|timed? ?out|reset|broken pipe|segmentation|core dumped|killed' "$f" || true)"
  if [[ -z "$line" ]]; then
    line="$(grep -v '^[[:space:]]*$' "$f" | tail -n1 || true)"
  fi
  printf '%s\n' "${line:0:300}"
}

# ---------------------------------------------------------------------------------------------
# Set-up and teardown
# ---------------------------------------------------------------------------------------------
_apps_x() {
  if [[ "${APPS_VERBOSE:-0}" == 1 ]]; then log "+ $*"; fi
  "$@"
}

# apps_init MODE: check the mode and privileges, install the traps, create the temp dir and the
# namespace pair, and define GUEST_PREFIX.
apps_init() {
  APPS_MODE="${1:-}"
  case "$APPS_MODE" in
    kernel) GUEST_PREFIX=() ;;
    offloaded)
      if [[ -z "${TOSEC:-}" ]]; then
        skip "offloaded mode needs TOSEC=<path of the tosec CLI> (target 'tosec' not built?)"
      fi
      if [[ ! -x "$TOSEC" ]]; then
        skip "TOSEC=$TOSEC is not an executable file (target 'tosec' not built?)"
      fi
      GUEST_PREFIX=("$TOSEC" run)
      if [[ -n "${TOSEC_CONFIG:-}" ]]; then GUEST_PREFIX+=(-c "$TOSEC_CONFIG"); fi
      if [[ -n "${TOSEC_RUN_ARGS:-}" ]]; then
        # shellcheck disable=SC2206  # word-splitting is the point
        GUEST_PREFIX+=($TOSEC_RUN_ARGS)
      fi
      GUEST_PREFIX+=(--)
      ;;
    *)
      printf 'usage: %s kernel|offloaded\n' "$0" >&2
      exit 2
      ;;
  esac
  if [[ $EUID -ne 0 ]]; then skip "needs root (network namespaces)"; fi
  command -v ip >/dev/null 2>&1 || skip "iproute2 (ip) is not installed"
  command -v ss >/dev/null 2>&1 || skip "iproute2 (ss) is not installed"

  # The original stdout/stderr: a signal may arrive while a function runs with its output
  # redirected to a log file; the handlers restore these so that their messages are seen.
  exec {APPS_OUT_FD}>&1 {APPS_ERR_FD}>&2
  trap _apps_cleanup EXIT
  trap '_apps_on_signal INT' INT
  trap '_apps_on_signal TERM' TERM
  trap '_apps_on_signal HUP' HUP

  APPS_TMP="$(mktemp -d "/tmp/tosec-apps-${APPS_SCENARIO}-${APPS_MODE}.XXXXXX")"
  _apps_start_watchdog
  netns_setup
}

# A whole-scenario budget (APPS_BUDGET seconds; CMake sets it below the ctest TIMEOUT, which
# kills without letting the traps run). On expiry: SIGTERM to the script and to its direct
# children (the bounded foreground command it waits for), so that the traps clean up.
APPS_WATCHDOG_PID=""
_apps_start_watchdog() {
  local budget=${APPS_BUDGET:-0} main=$$
  [[ "$budget" =~ ^[0-9]+$ && $budget -gt 0 ]] || return 0
  (
    trap - EXIT INT HUP
    # `sleep` would keep the test's output pipe open after the test ends (ctest then waits for
    # it): sleep in the background and end it when cleanup terminates the watchdog.
    sleep "$budget" &
    sp=$!
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    wait "$sp"
    printf '[watchdog] %s/%s exceeded its %ss budget\n' "$APPS_SCENARIO" "$APPS_MODE" "$budget" >&2
    kill -TERM "$main" 2>/dev/null
    for c in /proc/[0-9]*/stat; do
      read -r pid _ <"$c" 2>/dev/null || continue
      st="$(cat "$c" 2>/dev/null)" || continue
      # shellcheck disable=SC2086  # split the fields after "comm)"
      set -- ${st##*) }
      [[ "${2:-}" == "$main" && "$pid" != "$BASHPID" ]] && kill -TERM "$pid" 2>/dev/null
    done
  ) </dev/null &
  APPS_WATCHDOG_PID=$!
}

_apps_on_signal() {
  exec 1>&"$APPS_OUT_FD" 2>&"$APPS_ERR_FD"
  log "caught SIG$1, cleaning up"
  APPS_RESULT_PRINTED=1
  printf 'FAIL: interrupted by SIG%s (timeout?)\n' "$1"
  exit 1
}

# apps_require TOOL...: SKIP when a tool is missing.
apps_require() {
  local t missing=()
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if ((${#missing[@]})); then skip "missing tools: ${missing[*]} (see the package list in docs/compat.md)"; fi
}

# netns_setup: create the peer namespace, the veth pair and the addresses; wait until the peer is
# reachable both ways. Sets APPS_NS, APPS_VETH_HOST/PEER, HOST_IP, PEER_IP.
netns_setup() {
  local id=$$ x i subnet
  APPS_NS="tosec-apps-$id"
  APPS_VETH_HOST="tsa${id}h"
  APPS_VETH_PEER="tsa${id}p"
  # A /24 of 10.203.0.0/16 that no interface or route on the host uses.
  x=""
  for ((i = 0; i < 254; i++)); do
    local cand=$(((id + i) % 254 + 1))
    subnet="10.203.$cand"
    if [[ -z "$(ip -4 -o addr show to "$subnet.0/24" 2>/dev/null)" &&
      -z "$(ip -4 route show "$subnet.0/24" 2>/dev/null)" ]]; then
      x=$cand
      break
    fi
  done
  [[ -n "$x" ]] || fail "no free /24 in 10.203.0.0/16 for the test namespace"
  HOST_IP="10.203.$x.1"
  PEER_IP="10.203.$x.2"
  export HOST_IP PEER_IP

  _apps_x ip netns add "$APPS_NS" || fail "ip netns add $APPS_NS failed"
  _apps_x ip link add "$APPS_VETH_HOST" type veth peer name "$APPS_VETH_PEER" netns "$APPS_NS" ||
    fail "creating veth pair $APPS_VETH_HOST/$APPS_VETH_PEER failed"
  _apps_x ip addr add "$HOST_IP/24" dev "$APPS_VETH_HOST"
  _apps_x ip link set "$APPS_VETH_HOST" up
  _apps_x ip -n "$APPS_NS" addr add "$PEER_IP/24" dev "$APPS_VETH_PEER"
  _apps_x ip -n "$APPS_NS" link set "$APPS_VETH_PEER" up
  _apps_x ip -n "$APPS_NS" link set lo up
  wait_reachable 10 || fail "peer $PEER_IP not reachable over $APPS_VETH_HOST within 10 s"
  log "namespace $APPS_NS: host $HOST_IP ($APPS_VETH_HOST) <-> peer $PEER_IP ($APPS_VETH_PEER)"
}

# _probe_tcp [--peer] IP: 0 when IP answers on the network (a TCP connect to the closed port 9
# is refused with a RST, or, unlikely, succeeds); 1 on timeout / unreachable.
_probe_tcp() {
  local pre=()
  if [[ "$1" == --peer ]]; then pre=(ip netns exec "$APPS_NS"); shift; fi
  local out rc=0
  out="$(timeout 2 "${pre[@]}" bash -c "exec 3<>/dev/tcp/$1/9" 2>&1)" || rc=$?
  [[ $rc -eq 0 ]] && return 0
  [[ "$out" == *"refused"* ]] && return 0
  return 1
}

# wait_reachable SECONDS: the peer answers from the host and the host from the peer (ping when
# iputils-ping is installed, else a TCP probe to a closed port: the RST proves reachability).
wait_reachable() {
  local secs=${1:-10} deadline
  deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    if command -v ping >/dev/null 2>&1; then
      if ping -c1 -W1 "$PEER_IP" >/dev/null 2>&1 &&
        ip netns exec "$APPS_NS" ping -c1 -W1 "$HOST_IP" >/dev/null 2>&1; then
        return 0
      fi
    elif _probe_tcp "$PEER_IP" && _probe_tcp --peer "$HOST_IP"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

_apps_cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  exec 1>&"$APPS_OUT_FD" 2>&"$APPS_ERR_FD"
  if [[ $rc -ne 0 && $rc -ne 77 ]]; then
    _apps_dump_logs
  fi
  local i
  if [[ -n "$APPS_WATCHDOG_PID" ]]; then
    kill "$APPS_WATCHDOG_PID" 2>/dev/null
    wait "$APPS_WATCHDOG_PID" 2>/dev/null
  fi
  for ((i = ${#APPS_PIDS[@]} - 1; i >= 0; i--)); do
    stop_bg "${APPS_PIDS[$i]}" >/dev/null 2>&1
  done
  netns_teardown
  if [[ -n "$APPS_TMP" && -d "$APPS_TMP" ]]; then
    if [[ "${APPS_KEEP_TMP:-0}" == 1 ]]; then
      log "kept $APPS_TMP"
    else
      rm -rf -- "$APPS_TMP"
    fi
  fi
  if [[ $APPS_RESULT_PRINTED -eq 0 && $rc -ne 0 ]]; then
    printf 'FAIL: %s exited with status %d (a command failed under set -e)\n' "$APPS_SCENARIO" "$rc"
  fi
  exit "$rc"
}

# netns_teardown: kill what still runs in the peer namespace (only processes started inside our
# own namespace), delete the namespace and the veth pair. Idempotent.
netns_teardown() {
  [[ -n "$APPS_NS" ]] || return 0
  local pids p i
  if ip netns list 2>/dev/null | grep -qw -- "$APPS_NS"; then
    for i in 1 2 3; do
      pids="$(ip netns pids "$APPS_NS" 2>/dev/null)"
      [[ -z "$pids" ]] && break
      for p in $pids; do kill -KILL "$p" 2>/dev/null; done
      sleep 0.2
    done
    ip netns del "$APPS_NS" 2>/dev/null || log "warning: ip netns del $APPS_NS failed"
  fi
  # The peer end goes with the namespace, and the pair with it; delete explicitly in case.
  for i in 1 2 3 4 5 6 7 8 9 10; do
    ip link show "$APPS_VETH_HOST" >/dev/null 2>&1 || break
    ip link del "$APPS_VETH_HOST" 2>/dev/null
    sleep 0.1
  done
  APPS_NS=""
}

_apps_dump_logs() {
  local i f
  for ((i = 0; i < ${#APPS_BG_NAMES[@]}; i++)); do
    f="$APPS_TMP/${APPS_BG_NAMES[$i]}.log"
    [[ -s "$f" ]] || continue
    printf -- '----- last lines of %s (%s) -----\n' "${APPS_BG_NAMES[$i]}" "$f" >&2
    tail -n 25 "$f" >&2
  done
}

# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
# run_in_peer CMD...: run CMD in the peer namespace (foreground).
run_in_peer() { ip netns exec "$APPS_NS" "$@"; }

# start_bg NAME [--peer] CMD...: start CMD in the background, in its own session/process group
# (so that stop_bg can end it and every child it forked, by its id), output to $APPS_TMP/NAME.log.
# --peer runs it in the peer namespace. Sets BG_PID.
start_bg() {
  local name=$1
  shift
  local pre=()
  if [[ "${1:-}" == --peer ]]; then pre=(ip netns exec "$APPS_NS"); shift; fi
  if [[ "${APPS_VERBOSE:-0}" == 1 ]]; then log "+ (bg $name) ${pre[*]} $*"; fi
  setsid "${pre[@]}" "$@" >"$APPS_TMP/$name.log" 2>&1 </dev/null &
  BG_PID=$!
  APPS_PIDS+=("$BG_PID")
  APPS_BG_NAMES+=("$name")
  log "started $name (pid $BG_PID): $*"
}

# start_guest_bg NAME CMD...: start_bg for a guest application (in the current mode).
start_guest_bg() {
  local name=$1
  shift
  start_bg "$name" "${GUEST_PREFIX[@]}" "$@"
}

# stop_bg PID [GRACE_SECONDS]: SIGTERM to the process group PID, SIGKILL after the grace period;
# prints the exit status.
stop_bg() {
  local pid=$1 grace=${2:-5} i rc=0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || rc=$?; printf '%s\n' "$rc"; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  # Children of the group that outlived the leader.
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || rc=$?
  printf '%s\n' "$rc"
}

# bg_alive PID NAME: fail (with the first error line of its log) when the process has exited.
bg_alive() {
  local pid=$1 name=$2
  if ! kill -0 "$pid" 2>/dev/null; then
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    fail "$name exited early (status $rc): $(first_error_line "$APPS_TMP/$name.log")"
  fi
}

# run_guest TIMEOUT CMD...: run CMD as the guest application (kernel: directly; offloaded:
# under `tosec run --`), bounded by TIMEOUT seconds. Output goes to the caller.
run_guest() {
  local t=$1
  shift
  if [[ "${APPS_VERBOSE:-0}" == 1 ]]; then log "+ (guest, ${t}s) ${GUEST_PREFIX[*]} $*"; fi
  timeout -k 5 "$t" "${GUEST_PREFIX[@]}" "$@"
}

# run_peer TIMEOUT CMD...: run CMD in the peer namespace, bounded by TIMEOUT seconds.
run_peer() {
  local t=$1
  shift
  if [[ "${APPS_VERBOSE:-0}" == 1 ]]; then log "+ (peer, ${t}s) $*"; fi
  timeout -k 5 "$t" ip netns exec "$APPS_NS" "$@"
}

# check_run NAME TIMEOUT {guest|peer} CMD...: run a command, its stdout+stderr to
# $APPS_TMP/NAME.out; fail with its first error line when it exits non-zero.
check_run() {
  local name=$1 t=$2 where=$3 rc=0
  shift 3
  if [[ "$where" == guest ]]; then
    run_guest "$t" "$@" >"$APPS_TMP/$name.out" 2>&1 || rc=$?
  else
    run_peer "$t" "$@" >"$APPS_TMP/$name.out" 2>&1 || rc=$?
  fi
  if [[ $rc -ne 0 ]]; then
    printf -- '----- output of %s -----\n' "$name" >&2
    tail -n 30 "$APPS_TMP/$name.out" >&2
    local why="exit status $rc"
    [[ $rc -eq 124 || $rc -eq 137 ]] && why="timed out after ${t}s"
    fail "$name ($where: $1) $why: $(first_error_line "$APPS_TMP/$name.out")"
  fi
}

# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------
# _listening [--peer] [--udp] PORT: a socket listens (TCP) / is bound (UDP) on PORT.
_listening() {
  local pre=() proto=-t
  if [[ "$1" == --peer ]]; then pre=(ip netns exec "$APPS_NS"); shift; fi
  if [[ "$1" == --udp ]]; then proto=-u; shift; fi
  local out
  out="$("${pre[@]}" ss -Hln "$proto" "sport = :$1" 2>/dev/null)" || return 1
  [[ -n "$out" ]]
}

# wait_for_port [--peer] [--udp] IP PORT SECONDS [PID NAME]: bounded wait until something
# listens on PORT (in the peer namespace with --peer; in the root namespace otherwise, where the
# TOE's sockets live in offloaded mode). With PID NAME, fail early if that process exits.
wait_for_port() {
  local peer=() udp=()
  if [[ "$1" == --peer ]]; then peer=(--peer); shift; fi
  if [[ "$1" == --udp ]]; then udp=(--udp); shift; fi
  local ip=$1 port=$2 secs=$3 pid=${4:-} name=${5:-} deadline
  deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    if _listening "${peer[@]}" "${udp[@]}" "$port"; then return 0; fi
    if [[ -n "$pid" ]]; then bg_alive "$pid" "$name"; fi
    sleep 0.1
  done
  if [[ -n "$pid" ]]; then bg_alive "$pid" "$name"; fi
  fail "nothing listens on $ip:$port ${udp:+(udp) }after ${secs}s${name:+ ($name: $(first_error_line "$APPS_TMP/$name.log"))}"
}

# free_port: sets FREE_PORT to a TCP+UDP port in 20000..59999 that nothing in the root
# namespace uses (bounded tries). Not in $(...): fail must exit the script, not a subshell.
FREE_PORT=""
free_port() {
  local i p
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! _listening "$p" && ! _listening --udp "$p" &&
      [[ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]]; then
      FREE_PORT=$p
      return 0
    fi
  done
  fail "no free port found"
}

# ---------------------------------------------------------------------------------------------
# Small helpers for checks
# ---------------------------------------------------------------------------------------------
# make_random_file PATH MIB: a file of MIB MiB of random bytes; prints its sha256.
make_random_file() {
  head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"
  sha256sum "$1" | cut -d' ' -f1
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# is_positive NUMBER: a number > 0 (accepts decimals).
is_positive() {
  [[ "$1" =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] || return 1
  awk -v v="$1" 'BEGIN { exit !(v > 0) }'
}

# ---------------------------------------------------------------------------------------------
# Shared scenario bodies
# ---------------------------------------------------------------------------------------------
NETPERF_PORT=12865 # in the peer namespace (our own), so the default port cannot collide

# netperf_guest_client TEST LEN TESTARGS...: netserver in the peer, netperf as the guest; fails
# unless the result is > 0. Sets NETPERF_RESULT to the CSV result line (do not call in $(...)).
NETPERF_RESULT=""
netperf_guest_client() {
  local test=$1 len=$2
  shift 2
  apps_require netperf netserver
  start_bg netserver --peer netserver -D -4 -p "$NETPERF_PORT" -L "$PEER_IP"
  local ns_pid=$BG_PID
  wait_for_port --peer "$PEER_IP" "$NETPERF_PORT" 10 "$ns_pid" netserver
  offload_watch_start "dst $PEER_IP"
  # shellcheck disable=SC2054  # the commas belong to netperf's -o list
  local cmd=(netperf -4 -H "$PEER_IP" -p "$NETPERF_PORT" -t "$test" -l "$len" -P 0 -- "$@"
    -o THROUGHPUT,THROUGHPUT_UNITS,ELAPSED_TIME,MEAN_LATENCY)
  local rc=0
  if [[ "$test" == TCP_CRR ]]; then
    # Known open bug (issue 3): under the shim, netperf's blocking recv() after shutdown(SHUT_WR)
    # rarely returns EAGAIN ("disconnect_data_socket failed"): seen in full-suite runs (CI, a
    # clean-clone run on 2026-12-05), never reproduced alone. That one signature gets one retry, logged; any other failure,
    # or the same one twice, fails the test.
    run_guest 60 "${cmd[@]}" >"$APPS_TMP/netperf.out" 2>&1 || rc=$?
    if ((rc != 0)) && grep -q 'disconnect_data_socket failed: Resource temporarily unavailable' \
      "$APPS_TMP/netperf.out"; then
      log "KNOWN BUG (issue 3): TCP_CRR disconnect_data_socket EAGAIN; retrying once"
      rc=0
      check_run netperf 60 guest "${cmd[@]}"
    elif ((rc != 0)); then
      tail -n 30 "$APPS_TMP/netperf.out" >&2
      fail "netperf (guest) exit status $rc: $(first_error_line "$APPS_TMP/netperf.out")"
    fi
  else
    check_run netperf 60 guest "${cmd[@]}"
  fi
  offload_watch_check
  local line thr
  line="$(grep -E '^[0-9.]+,' "$APPS_TMP/netperf.out" | tail -n1 || true)"
  thr="${line%%,*}"
  cat "$APPS_TMP/netperf.out" >&2
  is_positive "$thr" || fail "netperf $test: no positive throughput in output: $(first_error_line "$APPS_TMP/netperf.out")"
  bg_alive "$ns_pid" netserver
  NETPERF_RESULT=$line
}

# write_nginx_conf DIR LISTEN(IP:PORT) WORKERS: a minimal nginx configuration in DIR
# (DIR/nginx.conf, logs and temp paths in DIR, document root DIR/www, `daemon off;`).
write_nginx_conf() {
  local dir=$1 listen=$2 workers=$3
  mkdir -p "$dir/www" "$dir/tmp" "$dir/logs"
  cat >"$dir/nginx.conf" <<NGINX
daemon off;
master_process on;
worker_processes $workers;
user root root;
pid $dir/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 256; }
http {
  default_type application/octet-stream;
  types { text/html html; text/plain txt; }
  access_log $dir/logs/access.log;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 10;
  server {
    listen $listen;
    root $dir/www;
  }
}
NGINX
}

# start_nginx NAME DIR {guest|peer}: start nginx on DIR/nginx.conf (foreground master); sets BG_PID.
start_nginx() {
  local name=$1 dir=$2 where=$3
  local cmd=(nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log")
  if [[ "$where" == guest ]]; then
    start_guest_bg "$name" "${cmd[@]}"
  else
    start_bg "$name" --peer "${cmd[@]}"
  fi
}

# session_procs SID NAME: how many processes named NAME run in session SID (start_bg makes each
# background command a session leader, so its pid is the session id of everything it forks).
session_procs() { pgrep -c -s "$1" -x "$2" 2>/dev/null || true; }

# sockperf_guest_client {tcp|udp}: sockperf server in the peer, `sockperf ping-pong` as the
# guest; fails unless messages were received and no message was dropped. Sets SOCKPERF_RESULT.
SOCKPERF_RESULT=""
sockperf_guest_client() {
  local proto=$1 port=11111 flag=()
  apps_require sockperf
  [[ "$proto" == tcp ]] && flag=(--tcp)
  start_bg sockperf-server --peer sockperf server "${flag[@]}" -i "$PEER_IP" -p "$port"
  local srv=$BG_PID
  if [[ "$proto" == tcp ]]; then
    wait_for_port --peer "$PEER_IP" "$port" 10 "$srv" sockperf-server
  else
    wait_for_port --peer --udp "$PEER_IP" "$port" 10 "$srv" sockperf-server
  fi
  if [[ "$proto" == tcp ]]; then offload_watch_start "dst $PEER_IP"; else offload_watch_start --udp sockperf; fi
  check_run sockperf 60 guest sockperf ping-pong "${flag[@]}" -i "$PEER_IP" -p "$port" -t 3
  offload_watch_check
  local f="$APPS_TMP/sockperf.out" valid recv lat
  valid="$(grep -m1 'Valid Duration' "$f" || true)"
  recv="$(sed -n 's/.*ReceivedMessages=\([0-9]*\).*/\1/p' <<<"$valid")"
  lat="$(sed -n 's/.*Summary: Latency is \([0-9.]*\) usec.*/\1/p' "$f" | head -n1)"
  is_positive "${recv:-0}" || fail "sockperf $proto: no message received: $(first_error_line "$f")"
  is_positive "${lat:-0}" || fail "sockperf $proto: no latency summary: $(first_error_line "$f")"
  if grep -q 'dropped messages = [1-9]' "$f"; then
    fail "sockperf $proto: $(grep -m1 'dropped messages' "$f" | sed 's/^sockperf: //')"
  fi
  bg_alive "$srv" sockperf-server
  SOCKPERF_RESULT="$recv messages, mean latency $lat us"
}

# iperf3_guest_client [-R]: iperf3 server (one test) in the peer, iperf3 client as the guest for
# 3 s (-R: the peer sends). Fails unless bytes were received. Sets IPERF3_RESULT.
IPERF3_RESULT=""
iperf3_guest_client() {
  local port=5201
  apps_require iperf3
  start_bg iperf3-server --peer iperf3 -s -1 -B "$PEER_IP" -p "$port"
  local srv=$BG_PID
  wait_for_port --peer "$PEER_IP" "$port" 10 "$srv" iperf3-server
  offload_watch_start "dst $PEER_IP"
  check_run iperf3 60 guest iperf3 -c "$PEER_IP" -p "$port" -t 3 -J "$@"
  offload_watch_check
  IPERF3_RESULT="$(/usr/bin/python3 - "$APPS_TMP/iperf3.out" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("ERROR: iperf3 -J output is not JSON: %s" % e); sys.exit(0)
if d.get("error"):
    print("ERROR: " + d["error"]); sys.exit(0)
end = d.get("end", {})
r, s = end.get("sum_received", {}), end.get("sum_sent", {})
print("%d %.1f %d" % (r.get("bytes", 0), r.get("bits_per_second", 0) / 1e6, s.get("retransmits", 0) or 0))
PY
)"
  [[ "$IPERF3_RESULT" != ERROR:* ]] || fail "iperf3 $*: ${IPERF3_RESULT#ERROR: }"
  local bytes mbps
  read -r bytes mbps _ <<<"$IPERF3_RESULT"
  is_positive "$bytes" || fail "iperf3 $*: 0 bytes received: $(first_error_line "$APPS_TMP/iperf3.out")"
  IPERF3_RESULT="$bytes bytes received, $mbps Mbit/s"
}

# ---------------------------------------------------------------------------------------------
# Offload verification (offloaded mode only): in process mode the TOE (tosec-tovm) owns the
# kernel sockets of offloaded connections, so `ss -p` shows who really holds them. A scenario
# passes in offloaded mode only if no observed guest connection is owned by the application
# itself (which would mean the shim let it fall through to the kernel stack).
# ---------------------------------------------------------------------------------------------
APPS_TOE_COMM="${APPS_TOE_COMM:-tosec-tovm}"
OFFLOAD_NOTE=""
_OFFLOAD_WATCH_PID=""

# offload_watch_start FILTER...: sample `ss -Htnp FILTER` (root namespace) every 0.1 s into
# $APPS_TMP/ss.log until offload_watch_check. FILTER e.g. "dst $PEER_IP" or "src $HOST_IP".
# offload_watch_start --udp APP: sample the UDP sockets owned by APP or by the TOE instead
# (an unconnected UDP socket has no peer address to filter on).
offload_watch_start() {
  [[ "$APPS_MODE" == offloaded ]] || return 0
  local sampler
  if [[ "$1" == --udp ]]; then
    sampler="ss -Htuanp 2>/dev/null | grep -E '^udp .*users:\\(\\(\"($2|$APPS_TOE_COMM)\"'"
  else
    sampler="ss -Htuanp '$*' 2>/dev/null"
  fi
  start_bg offload-watch bash -c "for ((i = 0; i < 3000; i++)); do $sampler; sleep 0.1; done"

  _OFFLOAD_WATCH_PID=$BG_PID
}

# offload_listener_check PORT: the guest server's listening socket belongs to the TOE.
offload_listener_check() {
  [[ "$APPS_MODE" == offloaded ]] || return 0
  local port=$1 owners
  owners="$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)".*/\1/p' | sort -u | tr '\n' ' ')"
  owners="${owners% }"
  [[ -n "$owners" ]] || fail "offload check: no listening socket on port $port"
  if [[ " $owners " != *" $APPS_TOE_COMM "* ]] || [[ -n "$(tr ' ' '\n' <<<"$owners" | grep -vx -e "$APPS_TOE_COMM" -e '' || true)" ]]; then
    fail "offload check: port $port is held by '$owners' (expected only $APPS_TOE_COMM: not offloaded)"
  fi
}

# offload_watch_check: stop the sampler; fail if an observed connection is owned by anything but
# the TOE; set OFFLOAD_NOTE (also when nothing was observed: a short run can slip between samples).
offload_watch_check() {
  [[ "$APPS_MODE" == offloaded ]] || return 0
  [[ -n "$_OFFLOAD_WATCH_PID" ]] && stop_bg "$_OFFLOAD_WATCH_PID" 1 >/dev/null
  _OFFLOAD_WATCH_PID=""
  local f="$APPS_TMP/offload-watch.log" summary bad
  # "tcp ESTAB ... users:(("tosec-tovm",pid=..." -> "tcp tosec-tovm"
  summary="$(sed -n 's/^\([a-z]*\) .*users:(("\([^"]*\)".*/\1 \2/p' "$f" 2>/dev/null | sort | uniq -c |
    awk '{ printf "%s%s %s (%s samples)", (NR > 1 ? ", " : ""), $2, $3, $1 }')"
  bad="$(sed -n 's/^[a-z]* .*users:(("\([^"]*\)".*/\1/p' "$f" 2>/dev/null | grep -vx "$APPS_TOE_COMM" | sort -u |
    tr '\n' ' ' || true)"
  if [[ -n "$bad" ]]; then
    fail "offload check: guest sockets owned by '${bad% }' (not $APPS_TOE_COMM): not offloaded [$summary]"
  fi
  if [[ -n "$summary" ]]; then
    OFFLOAD_NOTE=" [sockets seen: $summary]"
  else
    OFFLOAD_NOTE=" [offload not observed: no socket caught by the 0.1 s ss sampler]"
  fi
}
