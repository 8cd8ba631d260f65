#!/usr/bin/env bash
# Smoke test of eval/paper/run --quick (the paper's TCP_RR study, docs/evaluation/paper.md): it
# runs, and writes the CSV, the six plots and the report into a temporary directory. No
# thresholds, no timing: the numbers are not checked, only that every file is there and that the
# harness removed its namespaces and links. Needs root, netperf/netserver and matplotlib (SKIP,
# exit 77, otherwise).
#   paper_quick.sh SOURCE_DIR TOSEC_CLI NFV_PROXY
set -euo pipefail
src=$1 tosec=$2 proxy=$3
source "$(dirname "$0")/smoke_lib.sh"
need_root_and netperf netserver ip ss pgrep timeout
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || skip "python3-matplotlib is not installed"

tmp=$(mktemp -d /tmp/tosec-paper-quick.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
before=$(count_namespaces tosec-paper-)
run_logged 200 "$tmp/run.log" "eval/paper/run --quick" \
  /usr/bin/python3 "$src/eval/paper/run" --quick --tosec "$tosec" \
  --proxy "$proxy" --out-dir "$tmp/out" --plots-dir "$tmp/plots" --report "$tmp/paper.md"

after=$(count_namespaces tosec-paper-)
[[ $after -le $before ]] || fail "namespaces left behind: $(ip netns list | grep '^tosec-paper-')"
csvs=("$tmp"/out/paper-*.csv)
[[ -s ${csvs[0]} ]] || fail "no CSV in $tmp/out"
for c in 1B 1A 2A 2B 2C 3A 3B; do
  grep -q "^1,$c,$c," "${csvs[0]}" || fail "CSV has no run of case $c"
done
for f in fig4-latency-offload fig5-cpu-offload fig7-latency-1svm fig8-cpu-1svm \
  fig10-latency-2svm fig11-cpu-2svm; do
  [[ -s $tmp/plots/$f.png ]] || fail "plot $f.png missing"
done
for h in '## Results' '### Latency ratios' '### Goals (issue 5)' '### CPU per role' \
  '## How to run' '### Exact commands of this run'; do
  grep -qF "$h" "$tmp/paper.md" || fail "report has no section '$h'"
done
echo "PASS: eval/paper/run --quick wrote $(basename "${csvs[0]}"), 6 plots and the report"
