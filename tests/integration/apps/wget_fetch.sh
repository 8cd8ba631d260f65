#!/usr/bin/env bash
# app: wget (HTTP GET from nginx) | role: guest client
# nginx serves a 16 MiB random file and a small page from the peer; wget is the guest. Checks the
# content of the page and the sha256 of the big file. The transfer is rate-limited to
# 32 MB/s (~0.5 s) so that the offload check's ss sampler sees the connection.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/app_steps.sh"
apps_init "$@"
apps_require nginx wget
mkdir -p "$APPS_TMP/dl"
peer_web_site
offload_watch_start "dst $PEER_IP"
check_run wget 60 guest wget -nv --tries=1 --timeout=30 --no-proxy --limit-rate=32m -P "$APPS_TMP/dl" \
  "$PEER_WEB_URL/index.html" "$PEER_WEB_URL/big.bin"
expect_content "$APPS_TMP/dl/index.html" "$PEER_PAGE" "index.html content differs:"
expect_sha "$APPS_TMP/dl/big.bin" "$PEER_BIG_SUM" big.bin
offload_watch_check
pass "wget fetched index.html and 16 MiB big.bin, sha256 ok$OFFLOAD_NOTE"
