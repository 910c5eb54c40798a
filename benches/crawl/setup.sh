#!/usr/bin/env bash
# Crawl benchmark setup (issue 19 "Targets"): idempotent, loopback only.
# * nginx-light + python3.11-doc from Debian (apt-get update only when a package is missing);
# * our own nginx (config, pid and logs under /tmp/wt-crawl-bench/nginx; the system nginx
#   service is never touched) serving /usr/share/doc/python3.11/html on 127.0.0.1:8089;
# * a venv with Scrapy from PyPI (VENV, default /tmp/wt-crawl-bench/venv).
# Not part of the test build: `bash tests/run-all.sh` never reads benches/crawl/.
set -euo pipefail
ROOT=${ROOT:-/tmp/wt-crawl-bench}
PORT=${PORT:-8089}
DOCS=/usr/share/doc/python3.11/html
VENV=${VENV:-$ROOT/venv}
NGINX=/usr/sbin/nginx

need=()
[ -x "$NGINX" ] || need+=(nginx-light)
[ -f "$DOCS/index.html" ] || need+=(python3.11-doc)
command -v /usr/bin/time >/dev/null || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" || { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; }
  # Debian's package starts the system service; it is not ours to keep running.
  # (We only stop it if the package install just started it; our own instance is separate.)
fi

mkdir -p "$ROOT/nginx/logs"
cat > "$ROOT/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $ROOT/nginx/nginx.pid;
error_log $ROOT/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
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
  "$NGINX" -p "$ROOT/nginx" -c "$ROOT/nginx/nginx.conf" -s reload
else
  "$NGINX" -p "$ROOT/nginx" -c "$ROOT/nginx/nginx.conf"
fi
for _ in $(seq 50); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/index.html" && break
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/index.html"
echo "nginx: http://127.0.0.1:$PORT/index.html (pid $(cat "$ROOT/nginx/nginx.pid"))"

if [ "${SKIP_SCRAPY:-0}" = 1 ]; then exit 0; fi  # the prod-path runs need no peers
if [ ! -x "$VENV/bin/scrapy" ]; then
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q scrapy
fi
echo "scrapy: $("$VENV/bin/scrapy" version) in $VENV"
