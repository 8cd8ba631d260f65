#!/usr/bin/env bash
# app: python3 -m http.server | role: guest server
# Debian's /usr/bin/python3 http.server is the guest application; curl in the peer fetches a page,
# the directory listing and an 8 MiB random file (sha256 checked).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
apps_require curl
[[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
free_port
port=$FREE_PORT
www="$APPS_TMP/www"
mkdir -p "$www"
sum="$(make_random_file "$www/big.bin" 8)"
printf 'hello from python %s\n' "$$" >"$www/page.txt"
start_guest_bg http /usr/bin/python3 -m http.server "$port" --bind "$HOST_IP" --directory "$www"
srv=$BG_PID
wait_for_port "$HOST_IP" "$port" 20 "$srv" http
offload_listener_check "$port"
offload_watch_start "src $HOST_IP"
check_run curl-page 30 peer curl -sS --fail --max-time 20 -o "$APPS_TMP/page.txt" "http://$HOST_IP:$port/page.txt"
[[ "$(cat "$APPS_TMP/page.txt")" == "hello from python $$" ]] ||
  fail "page.txt content differs: '$(head -c 100 "$APPS_TMP/page.txt")'"
check_run curl-list 30 peer curl -sS --fail --max-time 20 -o "$APPS_TMP/list.html" "http://$HOST_IP:$port/"
grep -q 'big.bin' "$APPS_TMP/list.html" || fail "directory listing does not show big.bin"
check_run curl-big 60 peer curl -sS --fail --max-time 50 -o "$APPS_TMP/got.bin" "http://$HOST_IP:$port/big.bin"
got="$(sha_of "$APPS_TMP/got.bin")"
[[ "$got" == "$sum" ]] ||
  fail "big.bin checksum differs: got $got ($(stat -c %s "$APPS_TMP/got.bin") bytes), expected $sum"
bg_alive "$srv" http
offload_watch_check
pass "http.server served page.txt, the listing and 8 MiB big.bin (sha256 ok)$OFFLOAD_NOTE"
