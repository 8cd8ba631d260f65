#!/usr/bin/env bash
# app: python3 -m http.server | role: guest server
# Debian's /usr/bin/python3 http.server is the guest application; curl in the peer fetches a page,
# the directory listing and an 8 MiB random file (sha256 checked).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/app_steps.sh"
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
guest_server_ready http "$port"
check_run curl-page 30 peer curl -sS --fail --max-time 20 -o "$APPS_TMP/page.txt" "http://$HOST_IP:$port/page.txt"
expect_content "$APPS_TMP/page.txt" "hello from python $$" "page.txt content differs:"
check_run curl-list 30 peer curl -sS --fail --max-time 20 -o "$APPS_TMP/list.html" "http://$HOST_IP:$port/"
grep -q 'big.bin' "$APPS_TMP/list.html" || fail "directory listing does not show big.bin"
check_run curl-big 60 peer curl -sS --fail --max-time 50 -o "$APPS_TMP/got.bin" "http://$HOST_IP:$port/big.bin"
expect_sha "$APPS_TMP/got.bin" "$sum" big.bin
bg_alive "$GUEST_SRV" http
offload_watch_check
pass "http.server served page.txt, the listing and 8 MiB big.bin (sha256 ok)$OFFLOAD_NOTE"
