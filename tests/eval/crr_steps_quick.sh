#!/usr/bin/env bash
# Smoke test of eval/crr_steps/steps and tosec-crr-steps: one round of 200 connections, the
# local stack against the offloaded one. No thresholds, no timing: only that every step and the
# connection rate are printed for both, that a bad --variant is refused by name, and that the
# namespace is gone afterwards. Needs root (SKIP, exit 77, otherwise).
#   crr_steps_quick.sh SOURCE_DIR TOSEC_CLI TOSEC_CRR_STEPS
set -euo pipefail
src=$1 tosec=$2 steps_bin=$3
source "$(dirname "$0")/smoke_lib.sh"
need_root_and ip ss timeout

log=$(mktemp /tmp/tosec-crr-steps-quick.XXXXXX)
trap 'rm -f "$log"' EXIT
before=$(count_namespaces tosec-eval-)
run_logged 150 "$log" "eval/crr_steps/steps" \
  /usr/bin/python3 "$src/eval/crr_steps/steps" --bin "$steps_bin" \
  --variant "local=" --variant "tosec=$tosec run --" --rounds 1 --connections 200
grep -q '^round 1: local [0-9]*/s  tosec [0-9]*/s$' "$log" || fail "round 1 missing"
grep -Eq '^step +local +tosec$' "$log" || fail "no table header"
for step in 'socket' 'getsockopt x2' 'setsockopt' 'bind' 'connect' 'send\+recv' 'close' \
  'conn/s'; do
  grep -Eq "^$step +[0-9]+\.[0-9] +[0-9]+\.[0-9]$" "$log" || fail "no row for $step"
done
after=$(count_namespaces tosec-eval-)
[[ $after -le $before ]] || fail "namespaces left behind: $(ip netns list | grep '^tosec-eval-')"

out=$(/usr/bin/python3 "$src/eval/crr_steps/steps" --bin "$steps_bin" --variant "nameonly" \
  2>&1) && fail "a variant without '=' was accepted"
grep -q "expected NAME=PREFIX" <<<"$out" || fail "bad variant not named: $out"
echo "PASS"
