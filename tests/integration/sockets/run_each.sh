#!/usr/bin/env bash
# Runs every test of socket_semantics_test in its own process, optionally under a launcher
# (e.g. `tosec run --`), each bounded by a timeout, and prints a summary with the failure
# messages. One hung test (the in-binary watchdog exits the process) then costs only itself,
# not the rest of the suite. Not registered with ctest; see docs/testing-sockets.md.
#
# usage: run_each.sh [-t SECONDS] [-f GTEST_FILTER] [-o OUTDIR] TEST_BIN [LAUNCHER...]
#   run_each.sh build/bin/socket_semantics_test                          # kernel
#   run_each.sh build/bin/socket_semantics_test build/bin/tosec run --   # offloaded
set -u
timeout_s=300
filter='*'
outdir=
while getopts "t:f:o:" opt; do
  case $opt in
    t) timeout_s=$OPTARG ;;
    f) filter=$OPTARG ;;
    o) outdir=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n 2,10p "$0"; exit 2; }
bin=$1
shift
launcher=("$@")
[ -n "$outdir" ] || outdir=$(mktemp -d /tmp/sem-each.XXXXXX)
mkdir -p "$outdir"

mapfile -t tests < <("$bin" --gtest_list_tests --gtest_filter="$filter" | awk '
  /^[^ ]/ { suite = $1; next }
  /^  / { print suite $1 }')

pass=0
fail=0
failed=()
for t in "${tests[@]}"; do
  log="$outdir/${t//\//_}.log"
  timeout -k 10 "$timeout_s" "${launcher[@]}" "$bin" --gtest_filter="$t" >"$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ] && grep -q '^\[  PASSED  \] 1 test' "$log"; then
    pass=$((pass + 1))
    printf 'PASS %s\n' "$t"
  else
    fail=$((fail + 1))
    failed+=("$t")
    printf 'FAIL %s (exit %d)\n' "$t" "$rc"
    # The failure messages: gtest's "file:line: Failure" blocks, watchdog and child stderr.
    sed -n '/^\[ RUN /,/^\[  FAILED  \]/p' "$log" | grep -v '^\[ RUN \|^\[  FAILED  \]' |
      grep -v '^$' | head -n 40 | sed 's/^/     | /'
    grep -h '^tosec' "$log" | head -n 5 | sed 's/^/     | /'
  fi
done
echo "== $pass passed, $fail failed of ${#tests[@]} (logs in $outdir)"
for t in "${failed[@]}"; do echo "   failed: $t"; done
[ "$fail" -eq 0 ]
