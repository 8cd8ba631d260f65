# Sourced by the eval smoke tests (tests/eval/*_quick.sh): SKIP (exit 77) and FAIL, the root
# and tool checks, running a harness into a log, and the count of a harness's namespaces (to
# prove it removed them).
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

# need_root_and TOOL...: SKIP unless root and every TOOL is on PATH.
need_root_and() {
  [[ $EUID -eq 0 ]] || skip "needs root (network namespaces)"
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || skip "$t is not installed"
  done
}

# count_namespaces PREFIX: how many network namespaces start with PREFIX.
count_namespaces() { ip netns list | grep -c "^$1" || true; }

# run_logged SECONDS LOG WHAT CMD...: runs CMD with its output in LOG, SIGTERM after SECONDS (below
# ctest's timeout, so the harness still removes what it set up), prints LOG, and FAILs naming
# WHAT unless CMD exited 0.
run_logged() {
  local secs=$1 log=$2 what=$3 rc=0
  shift 3
  timeout -s TERM -k 15 "$secs" "$@" >"$log" 2>&1 || rc=$?
  cat "$log"
  [[ $rc -eq 0 ]] || fail "$what exited $rc"
}
