#!/usr/bin/env bash
# app: curl (HTTP GET from nginx) | role: guest client
# nginx serves a 16 MiB random file and a small page from the peer; curl is the guest. Checks the
# content of the page and the sha256 of the big file (two URLs in one run: keep-alive reuse).
# The transfer is rate-limited to 32 MB/s (~0.5 s) so that the offload check's ss sampler sees
# the connection.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/app_steps.sh"
apps_init "$@"
apps_require nginx curl
peer_web_site
offload_watch_start "dst $PEER_IP"
check_run curl 60 guest curl -sS --fail --max-time 50 --limit-rate 32M -o "$APPS_TMP/got.html" \
  "$PEER_WEB_URL/index.html" -o "$APPS_TMP/got.bin" "$PEER_WEB_URL/big.bin"
expect_content "$APPS_TMP/got.html" "$PEER_PAGE" "index.html content differs:"
expect_sha "$APPS_TMP/got.bin" "$PEER_BIG_SUM" big.bin
offload_watch_check
pass "curl fetched index.html and 16 MiB big.bin, sha256 ok$OFFLOAD_NOTE"
