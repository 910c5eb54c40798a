#!/usr/bin/env bash
# Fuzzes the JSON API against its own OpenAPI document (GET /api/openapi.json) with
# schemathesis (PyPI): a debug `wordtally serve --workers 0` on a free loopback port with a
# fresh SQLite file, in-memory queue and bus, a fixed seed and a bounded number of
# examples per operation. Two passes: open (no accounts, as on a laptop), then with
# sign-in required and an API token (there `ignored_auth` also checks that a request
# without the token is refused). Fails on any 5xx and on any response the document does
# not describe (status code, content type, headers, body schema). Prints how many
# requests it generated. Run from tests/run-all.sh, or alone after `cargo build --bin wordtally`:
#
#   bash tests/schemathesis.sh
#
# Environment: SCHEMATHESIS_MAX_EXAMPLES (default 100), SCHEMATHESIS_SEED (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "installing schemathesis into $venv (PyPI)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis
fi
"$venv/bin/schemathesis" --version

bin=target/debug/wordtally
[ -x "$bin" ] || cargo build --locked --bin wordtally

work=$(mktemp -d)
keep=${SCHEMATHESIS_KEEP:-}
server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
cleanup() {
  stop_server
  [ -n "$keep" ] && cp -r "$work" "$keep"
  rm -rf "$work"
}
trap cleanup EXIT

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
total=0
failed=0

# fuzz NAME DB_DIR [schemathesis options...]: serves DB_DIR's database, fuzzes, stops.
fuzz() {
  local name=$1 db=$2
  shift 2
  local port base
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base="http://127.0.0.1:$port"
  # Loopback, nothing fetched, in-memory queue and bus: the run needs no service and
  # leaves nothing behind but the temporary directory it removes.
  env -u REDIS_URL -u NSQD_TCP_ADDRESS -u NSQD_HTTP_ADDRESS -u NSQLOOKUPD_HTTP_ADDRESS \
    -u AUTH -u DATABASE_URL -u LISTEN RUST_LOG=warn \
    "$bin" serve --listen "127.0.0.1:$port" --database-url "sqlite://$db/wordtally.db" \
    --workers 0 >"$db/serve.log" 2>&1 &
  server_pid=$!
  local deadline=$((SECONDS + 60))
  until curl -fsS -o /dev/null "$base/healthz" 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "error: wordtally serve did not become ready on $base" >&2
      cat "$db/serve.log" >&2
      exit 1
    fi
    sleep 0.2
  done

  echo "--- schemathesis, $name"
  local status=0
  "$venv/bin/schemathesis" run "$base/api/openapi.json" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --workers 1 \
    --request-timeout 10 \
    --generation-with-security-parameters false \
    --generation-database none \
    --report ndjson --report-ndjson-path "$db/events.ndjson" \
    --no-color "$@" || status=$?
  stop_server

  # Every request schemathesis sent is one recorded interaction in its event stream.
  local n
  n=$(python3 - "$db/events.ndjson" <<'EOF'
import json, sys
n = 0
for line in open(sys.argv[1]):
    event = json.loads(line)
    if "ScenarioFinished" in event:
        n += len(event["ScenarioFinished"]["recorder"].get("interactions", {}))
print(n)
EOF
)
  echo "schemathesis, $name: $n requests generated"
  total=$((total + n))
  if [ "$status" != 0 ]; then
    failed=1
    echo "schemathesis failed ($name); the server's log (warnings and errors):" >&2
    tail -n 50 "$db/serve.log" >&2
  fi
}

mkdir "$work/open" "$work/signed-in"
fuzz "open on loopback" "$work/open" --checks "$checks"

# Sign-in required: one account, one token for it.
db="$work/signed-in"
echo "fuzz-password-0123456789" |
  env -u DATABASE_URL "$bin" user --database-url "sqlite://$db/wordtally.db" add fuzz --password-stdin >/dev/null
token=$(env -u DATABASE_URL "$bin" token --database-url "sqlite://$db/wordtally.db" create fuzz --user fuzz)
fuzz "sign-in required, bearer token" "$db" --checks "$checks,ignored_auth" \
  --header "Authorization: Bearer $token" --output-sanitize true

echo "schemathesis: $total requests generated in all"
exit "$failed"
