#!/usr/bin/env bash
# Smoke test of eval/userstack/compare and tosec-userstack-crr: one round of 200 connections
# through the kernel stack and through lwIP on a DPDK af_packet port. No thresholds, no timing:
# only that both variants finish every connection and print their rows, that bad arguments are
# refused by name, and that the namespace and the links are gone afterwards. Needs root (SKIP,
# exit 77, otherwise).
#   userstack_quick.sh SOURCE_DIR TOSEC_USERSTACK_CRR TOSEC_CRR_STEPS
set -euo pipefail
src=$1 probe=$2 server=$3
source "$(dirname "$0")/smoke_lib.sh"
need_root_and ip ss ethtool sysctl timeout

log=$(mktemp /tmp/tosec-userstack-quick.XXXXXX)
trap 'rm -f "$log"' EXIT
before=$(count_namespaces tosec-eval-)
run_logged 150 "$log" "eval/userstack/compare" \
  /usr/bin/python3 "$src/eval/userstack/compare" --probe "$probe" \
  --server "$server" --rounds 1 --connections 200
grep -Eq '^round 1: kernel [0-9]+/s  lwip [0-9]+/s$' "$log" || fail "round 1 missing"
for row in 'connect p50 us' 'send\+recv p50 us' 'conn/s' 'CPU us/conn' 'work us/conn'; do
  grep -Eq "^$row +[0-9]+\.[0-9] +[0-9]+\.[0-9]$" "$log" || fail "no row for $row"
done
grep -Eq '^lwip/kernel connections/s: median [0-9.]+ ' "$log" || fail "no ratio"
after=$(count_namespaces tosec-eval-)
[[ $after -le $before ]] || fail "namespaces left behind: $(ip netns list | grep '^tosec-eval-')"
! ip -o link show | grep -q ' tsu[0-9]*h' || fail "user-space veth left behind"

expect_refusal() {  # WHAT EXPECTED_TEXT ARGS...
  local what=$1 text=$2 out
  shift 2
  out=$("$probe" "$@" 2>&1) && fail "$what was accepted"
  grep -q -- "$text" <<<"$out" || fail "$what: not named in: $out"
}
expect_refusal "a bad port" "PORT '70000' is not 1-65535" kernel 10.0.0.1 70000
expect_refusal "a bad peer" "PEER_IP 'peer' is not an IPv4 address" lwip lo 10.0.0.1 peer 1
expect_refusal "too many lwIP connections" "CONNECTIONS '20000' is not 1-15000" \
  lwip lo 10.0.0.1 10.0.0.2 1 20000
expect_refusal "an unknown mode" "usage:" udp 10.0.0.1 1
echo "PASS"
