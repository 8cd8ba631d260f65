#!/usr/bin/env bash
# Two process peers exchange messages through a region served by tosec-ivshmem-server, in every
# notification mode; checks both exit 0, the pinger printed every mode, and nothing is left in
# /dev/shm or on the socket path afterwards.
set -euo pipefail
server="$1" pingpong="$2"
work="$(mktemp -d /tmp/tosec-chan-test.XXXXXX)"
shm="tosec-chan-test-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "/dev/shm/$shm"
  rm -rf "$work"
}
trap cleanup EXIT

"$server" -F -S "$work/s.sock" -M "$shm" -l 1M -n 1 >"$work/server.log" 2>&1 &
spid=$!
pids+=("$spid")
for _ in $(seq 600); do [[ -S "$work/s.sock" ]] && break; sleep 0.05; done
[[ -S "$work/s.sock" ]] || { echo "FAIL: the server made no socket in 30 s: $(cat "$work/server.log")"; exit 1; }
"$pingpong" --socket "$work/s.sock" --role ponger --rounds 2000 >"$work/ponger.log" 2>&1 &
ppid=$!
pids+=("$ppid")
# No wait for the ponger: either may join first (eval/pingpong takes a peer that was there or the
# next one to join).
"$pingpong" --socket "$work/s.sock" --role pinger --rounds 2000 | tee "$work/pinger.log"
wait "$ppid"
for mode in floor sleep adaptive spin; do
  grep -q "^$mode " "$work/pinger.log" || { echo "FAIL: no row for mode $mode"; exit 1; }
done
# Bad input gets a clear error: an unknown mode, and a socket with no server.
if "$pingpong" --role pinger --modes warp 2>"$work/err"; then echo "FAIL: bad mode accepted"; exit 1; fi
grep -q "unknown mode 'warp'" "$work/err" || { echo "FAIL: unclear error: $(cat "$work/err")"; exit 1; }
if "$pingpong" --role pinger --socket "$work/none.sock" 2>"$work/err"; then echo "FAIL: no server"; exit 1; fi
grep -q "none.sock" "$work/err" || { echo "FAIL: error does not name the socket: $(cat "$work/err")"; exit 1; }
kill "$spid"
wait "$spid" || true
[[ ! -e "$work/s.sock" ]] || { echo "FAIL: server left its socket behind"; exit 1; }
[[ ! -e "/dev/shm/$shm" ]] || { echo "FAIL: server left /dev/shm/$shm behind"; exit 1; }
echo PASS
