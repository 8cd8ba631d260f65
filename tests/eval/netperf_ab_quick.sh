#!/usr/bin/env bash
# Smoke test of eval/netperf/ab (paired A/B of netperf variants): two rounds of 1 s, the local
# stack against the offloaded one. No thresholds, no timing: only that every round and the
# summary (median ratio, bootstrap interval, verdict) are printed, that a bad --variant is
# refused by name, and that the namespace is gone afterwards. Needs root and netperf (SKIP, exit
# 77, otherwise).
#   netperf_ab_quick.sh SOURCE_DIR TOSEC_CLI
set -euo pipefail
src=$1 tosec=$2
source "$(dirname "$0")/smoke_lib.sh"
need_root_and netperf netserver ip ss timeout

log=$(mktemp /tmp/tosec-ab-quick.XXXXXX)
trap 'rm -f "$log"' EXIT
before=$(count_namespaces tosec-eval-)
run_logged 150 "$log" "eval/netperf/ab" \
  /usr/bin/python3 "$src/eval/netperf/ab" --variant "local=" \
  --variant "tosec=$tosec run --" --test rr1 --rounds 2 --len 1
grep -q '^round  1: local [0-9]*  tosec [0-9]*$' "$log" || fail "round 1 missing"
grep -q '^round  2: tosec [0-9]*  local [0-9]*$' "$log" || fail "round 2 not in reversed order"
grep -Eq '^tosec .*/local: median [0-9.]+, 95% CI \[[0-9.]+, [0-9.]+\]: (no difference shown|faster|slower)$' \
  "$log" || fail "no summary line for tosec against local"
after=$(count_namespaces tosec-eval-)
[[ $after -le $before ]] || fail "namespaces left behind: $(ip netns list | grep '^tosec-eval-')"

out=$(/usr/bin/python3 "$src/eval/netperf/ab" --variant "nameonly" --variant "x=" 2>&1) && \
  fail "a variant without '=' was accepted"
grep -q "expected NAME=PREFIX" <<<"$out" || fail "bad variant not named: $out"
echo "PASS"
