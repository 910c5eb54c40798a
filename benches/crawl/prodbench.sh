#!/usr/bin/env bash
# The production-path crawl benchmark (issue 19 "Targets"; see prodbench.py for what each
# phase measures). Loopback only; everything it starts lives under ROOT (default
# /tmp/wt-gensite: the generated site ~0.6 GB, nginx config/logs, results) and is stopped
# at the end, except nginx, which `prodbench.sh stop` stops.
#   CARGO_TARGET_DIR=target cargo build --release --bin wordtally --example nsq_test_broker
#   createdb -h 127.0.0.1 -U postgres wtbench        # made again per phase anyway
#   bash benches/crawl/prodbench.sh crawl,list,recovery   # or: all | nginx (the site only) | stop
# Needs nginx-light (benches/crawl/setup.sh installs it), redis-server, psql. Never touches
# the machine's Redis on 6379: the phases run their own redis-server on REDIS_PORT (6390).
# Not part of the test build: `bash tests/run-all.sh` never reads benches/crawl/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${ROOT:-/tmp/wt-gensite}
PAGES=${PAGES:-100000}
NGINX=/usr/sbin/nginx
export ROOT

if [ "${1:-}" = stop ]; then
  [ -f "$ROOT/nginx/nginx.pid" ] && "$NGINX" -p "$ROOT/nginx" -c "$ROOT/nginx/nginx.conf" -s quit || true
  exit 0
fi

if [ ! -f "$ROOT/manifest.json" ] || [ "$(python3 -c "import json;print(json.load(open('$ROOT/manifest.json'))['pages'])")" != "$PAGES" ]; then
  python3 "$HERE/gensite.py" "$ROOT/site" "$PAGES" 19
fi

mkdir -p "$ROOT/nginx/logs"
cat > "$ROOT/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $ROOT/nginx/nginx.pid;
error_log $ROOT/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  log_format bench '\$msec \$http_host \$server_port "\$request_uri" "\$uri" \$status \$bytes_sent';
  sendfile on; tcp_nopush on;
  keepalive_requests 1000000; keepalive_timeout 60s;
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  client_body_temp_path $ROOT/nginx/body; proxy_temp_path $ROOT/nginx/proxy;
  fastcgi_temp_path $ROOT/nginx/fastcgi; uwsgi_temp_path $ROOT/nginx/uwsgi; scgi_temp_path $ROOT/nginx/scgi;
  # The site: localhost:8090 (both loopback addresses, whichever "localhost" resolves to).
  server {
    listen 127.0.0.1:8090; listen [::1]:8090;
    root $ROOT/site;
    access_log $ROOT/nginx/logs/access.log bench buffer=256k flush=1s;
    # The trap: any path under /trap/ is trap.html, which links next/ (ever deeper).
    location /trap/ { try_files /trap.html =404; }
  }
  # An off-site listener: the generated pages link it; a crawl of localhost:8090 must not.
  server {
    listen 127.0.0.1:8091;
    root $ROOT/site;
    access_log $ROOT/nginx/logs/offsite.log bench;
  }
}
CONF
if [ -f "$ROOT/nginx/nginx.pid" ] && kill -0 "$(cat "$ROOT/nginx/nginx.pid")" 2>/dev/null; then
  "$NGINX" -p "$ROOT/nginx" -c "$ROOT/nginx/nginx.conf" -s reload
else
  "$NGINX" -p "$ROOT/nginx" -c "$ROOT/nginx/nginx.conf"
fi
for _ in $(seq 50); do
  curl -fsS -o /dev/null "http://localhost:8090/p/000/0.html" && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://localhost:8090/p/000/0.html"
echo "nginx: http://localhost:8090/p/000/0.html (pid $(cat "$ROOT/nginx/nginx.pid")); load $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${1:-all}" = nginx ] && exit 0  # the site only
exec python3 "$HERE/prodbench.py" "${1:-all}"
