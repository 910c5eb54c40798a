#!/usr/bin/env bash
# Bytes moved by an unchanged re-crawl (issue 21 item 6, DESIGN §16): "re-running an
# unchanged crawl of the 528-page docs site served by nginx (which sends both ETag and
# Last-Modified) must move at most 5% of the first run's bytes".
#
#   cargo build --bin wordtally                 # debug is fine: bytes do not depend on it
#   bash benches/crawl/rerun_bytes.sh           # WORDTALLY_BIN=… for another binary
#
# * Our own nginx on 127.0.0.1:$PORT (default 8092: 8089–8091 serve other benches)
#   serving Debian's python3.11-doc, config, pid and logs under $ROOT (/tmp/wt-rerun); its
#   access log has `$status $bytes_sent $request_uri` and the validators each request
#   carried. No other nginx is touched.
# * `wordtally serve` (SQLite, embedded) with ALLOW_TARGETS=127.0.0.1:$PORT (only this
#   loopback target passes the SSRF guard).
# * Run 1: `POST /api/crawls` from index.html with a user's defaults (same host, robots.txt
#   obeyed). Run 2: the batch's Retry with every outcome ticked (what the batch page's
#   "Retry…" does with all boxes). Run 3: a schedule (`every 1m`) starts it by itself;
#   the schedule is removed once run 3 started.
# * Per run: requests, bytes_sent summed from the access log (headers included), 200s,
#   304s, other statuses, requests that carried If-None-Match / If-Modified-Since.
# Loopback only. Not part of the test build (`tests/run-all.sh` never reads benches/).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOT=${ROOT:-/tmp/wt-rerun}
PORT=${PORT:-8092}
DOCS=/usr/share/doc/python3.11/html
NGINX=/usr/sbin/nginx
BIN=${WORDTALLY_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/wordtally}
WORKERS=${WORKERS:-16}
[ -x "$NGINX" ] && [ -f "$DOCS/index.html" ] || {
  echo "needs nginx-light and python3.11-doc: apt-get install -y nginx-light python3.11-doc" >&2
  exit 1
}
[ -x "$BIN" ] || { echo "no wordtally binary at $BIN (cargo build --bin wordtally)" >&2; exit 1; }

mkdir -p "$ROOT/nginx/logs"
LOG=$ROOT/nginx/logs/access.log
cat > "$ROOT/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $ROOT/nginx/nginx.pid;
error_log $ROOT/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  log_format rerun '\$msec \$status \$bytes_sent \$request_uri inm=\$http_if_none_match ims="\$http_if_modified_since"';
  access_log $LOG rerun;
  sendfile on; tcp_nopush on;
  keepalive_requests 1000000; keepalive_timeout 60s;
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  client_body_temp_path $ROOT/nginx/body; proxy_temp_path $ROOT/nginx/proxy;
  fastcgi_temp_path $ROOT/nginx/fastcgi; uwsgi_temp_path $ROOT/nginx/uwsgi; scgi_temp_path $ROOT/nginx/scgi;
  server { listen 127.0.0.1:$PORT; root $DOCS; }
}
CONF
if [ -f "$ROOT/nginx/nginx.pid" ] && kill -0 "$(cat "$ROOT/nginx/nginx.pid")" 2>/dev/null; then
  "$NGINX" -p "$ROOT/nginx" -c "$ROOT/nginx/nginx.conf" -s stop
  sleep 0.5
fi
: > "$LOG"
"$NGINX" -p "$ROOT/nginx" -c "$ROOT/nginx/nginx.conf"
NGINX_PID=$(cat "$ROOT/nginx/nginx.pid")
START="http://127.0.0.1:$PORT/index.html"
curl -fsS -o /dev/null "$START"

# serve on a free port, a fresh SQLite database.
SERVE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$SERVE_PORT"
rm -f "$ROOT"/rerun.db*
RUST_LOG=warn DATABASE_URL="sqlite://$ROOT/rerun.db" ALLOW_TARGETS="127.0.0.1:$PORT" \
  SCHEDULE_TICK_MS=500 "$BIN" serve --listen "127.0.0.1:$SERVE_PORT" --workers "$WORKERS" \
  > "$ROOT/serve.log" 2>&1 &
SERVE_PID=$!
cleanup() {
  kill "$SERVE_PID" 2>/dev/null || true
  wait "$SERVE_PID" 2>/dev/null || true
  kill "$NGINX_PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 600); do curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "$BASE/healthz"

api() { curl -fsS -H 'content-type: application/json' "$@"; }
# Waits until run $2 of batch $1 has finished (at most 15 minutes).
wait_run() {
  local deadline=$((SECONDS + 900))
  until api "$BASE/api/batches/$1/runs" | jq -e --argjson r "$2" \
      '.runs | map(select(.run == $r and .finished_at != null)) | length == 1' >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "run $2 of batch $1 did not finish" >&2; exit 1; }
    sleep 0.2
  done
}
# Log lines so far (each run's requests are the lines between two marks).
mark() { wc -l < "$LOG"; }

# Sums the access-log lines ($2, $3] as one run named $1.
summarize() {
  sed -n "$(($2 + 1)),$3p" "$LOG" | awk -v name="$1" '
    { n++; bytes += $3; s[$2]++
      if ($5 != "inm=-") inm++
      if ($0 !~ /ims="-"$/) ims++ }
    END { printf "%s\trequests %d\tbytes %d\t200 %d\t304 %d\t404 %d\tother %d\tIf-None-Match %d\tIf-Modified-Since %d\n",
            name, n, bytes, s[200], s[304], s[404], n - s[200] - s[304] - s[404], inm, ims }'
}

m0=$(mark)
batch=$(api -d "{\"start\": [\"$START\"], \"word\": \"python\"}" "$BASE/api/crawls" | jq -r .batch_id)
wait_run "$batch" 1
m1=$(mark)
api -d '{"outcomes": ["ok", "http_error", "failed", "truncated", "cancelled"]}' \
  "$BASE/api/batches/$batch/retry" | jq -c .
wait_run "$batch" 2
m2=$(mark)
api -X PUT -d '{"every": "1m"}' "$BASE/api/batches/$batch/schedule" | jq -c .
deadline=$((SECONDS + 180))
until api "$BASE/api/batches/$batch/runs" | jq -e '.runs | map(select(.run == 3)) | length == 1' >/dev/null; do
  [ $SECONDS -lt $deadline ] || { echo "the schedule did not start run 3" >&2; exit 1; }
  sleep 0.5
done
api -X DELETE "$BASE/api/batches/$batch/schedule"
wait_run "$batch" 3
m3=$(mark)

echo "batch $batch: $(api "$BASE/api/batches/$batch" | jq -c '{total, ok, http_error, failed, skipped, words_total}')"
api "$BASE/api/batches/$batch/runs" | jq -c '.runs[] | {run, trigger, words_total}'
{
  summarize "run 1 (crawl)" "$m0" "$m1"
  summarize "run 2 (retry)" "$m1" "$m2"
  summarize "run 3 (schedule)" "$m2" "$m3"
} | tee "$ROOT/summary.tsv"
first=$(awk -F'\t' 'NR==1 { split($3, a, " "); print a[2] }' "$ROOT/summary.tsv")
awk -F'\t' -v first="$first" 'NR > 1 { split($3, a, " "); printf "%s: %.2f%% of the first run'"'"'s bytes\n", $1, 100 * a[2] / first }' "$ROOT/summary.tsv"
echo "what the re-runs' non-304 requests were (status bytes uri):"
sed -n "$((m1 + 1)),${m3}p" "$LOG" | awk '$2 != 304 { print $2, $3, $4 }' | sort | uniq -c | sort -rn | head -20
echo "access log: $LOG (lines $m0–$m3); serve log: $ROOT/serve.log"
