# Sourced by the eval smoke tests (tests/eval/*_quick.sh): SKIP (exit 77) and FAIL, the root
# and tool checks, and the count of a harness's namespaces (to prove it removed them).
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
