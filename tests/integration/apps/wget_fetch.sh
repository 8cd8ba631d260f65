#!/usr/bin/env bash
# app: wget (HTTP GET from nginx) | role: guest client
# nginx serves a 16 MiB random file and a small page from the peer; wget is the guest. Checks the
# content of the page and the sha256 of the big file. The transfer is rate-limited to
# 32 MB/s (~0.5 s) so that the offload check's ss sampler sees the connection.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"
apps_init "$@"
apps_require nginx wget
port=8080
web="$APPS_TMP/nginx"
write_nginx_conf "$web" "$PEER_IP:$port" 2
sum="$(make_random_file "$web/www/big.bin" 16)"
printf 'hello from H2 %s\n' "$$" >"$web/www/index.html"
start_nginx nginx "$web" peer
wait_for_port --peer "$PEER_IP" "$port" 10 "$BG_PID" nginx
mkdir -p "$APPS_TMP/dl"
offload_watch_start "dst $PEER_IP"
check_run wget 60 guest wget -nv --tries=1 --timeout=30 --no-proxy --limit-rate=32m -P "$APPS_TMP/dl" \
  "http://$PEER_IP:$port/index.html" "http://$PEER_IP:$port/big.bin"
[[ "$(cat "$APPS_TMP/dl/index.html")" == "hello from H2 $$" ]] ||
  fail "index.html content differs: '$(head -c 100 "$APPS_TMP/dl/index.html")'"
got="$(sha_of "$APPS_TMP/dl/big.bin")"
[[ "$got" == "$sum" ]] ||
  fail "big.bin checksum differs: got $got ($(stat -c %s "$APPS_TMP/dl/big.bin") bytes), expected $sum"
offload_watch_check
pass "wget fetched index.html and 16 MiB big.bin, sha256 ok$OFFLOAD_NOTE"
