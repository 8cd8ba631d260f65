#!/usr/bin/env bash
# app: nginx (master + 2 workers, sendfile) | role: guest server
# nginx is the guest application (its own config in a temp dir, `daemon off;`); curl in the peer
# fetches a page, a 16 MiB random file (sha256 checked) and then 20 pages on parallel connections.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/app_steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/app_steps.sh"
apps_init "$@"
apps_require nginx curl
free_port
port=$FREE_PORT
web="$APPS_TMP/nginx"
write_nginx_conf "$web" "$HOST_IP:$port" 2
sum="$(make_random_file "$web/www/big.bin" 16)"
printf 'hello from the guest %s\n' "$$" >"$web/www/index.html"
start_nginx nginx "$web" guest
guest_server_ready nginx "$port"
srv=$GUEST_SRV
# master + 2 workers
for ((i = 0; i < 50; i++)); do
  (($(session_procs "$srv" nginx) >= 3)) && break
  sleep 0.1
done
n="$(session_procs "$srv" nginx)"
((n >= 3)) || fail "expected nginx master + 2 workers, found $n nginx processes"
check_run curl-page 30 peer curl -sS --fail --max-time 20 -o "$APPS_TMP/got.html" "http://$HOST_IP:$port/index.html"
expect_content "$APPS_TMP/got.html" "hello from the guest $$" "index.html content differs:"
check_run curl-big 60 peer curl -sS --fail --max-time 50 -o "$APPS_TMP/got.bin" "http://$HOST_IP:$port/big.bin"
expect_sha "$APPS_TMP/got.bin" "$sum" big.bin
urls=()
for ((i = 0; i < 20; i++)); do urls+=(-o /dev/null "http://$HOST_IP:$port/index.html"); done
check_run curl-parallel 60 peer curl -sS --fail --max-time 50 --parallel --parallel-max 10 \
  -w '%{http_code}\n' "${urls[@]}"
ok="$(grep -c '^200$' "$APPS_TMP/curl-parallel.out" || true)"
[[ "$ok" == 20 ]] || fail "parallel fetch: $ok/20 responses were 200"
bg_alive "$srv" nginx
offload_watch_check
pass "nginx master+$((n - 1)) workers served index.html, 16 MiB big.bin (sha256 ok), 20 parallel requests$OFFLOAD_NOTE"
