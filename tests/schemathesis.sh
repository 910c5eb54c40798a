#!/usr/bin/env bash
# Fuzzes the JSON API against its own OpenAPI document (GET /api/openapi.json) with
# schemathesis (PyPI): a debug `wordtally serve --workers 0` on a free loopback port with a
# fresh SQLite file, in-memory queue and bus, a fixed seed and a bounded number of
# examples per operation. Fails on any 5xx and on any response the document does not
# describe (status code, content type, headers, body schema). Prints how many requests
# it generated. Run from tests/run-all.sh, or alone after `cargo build --bin wordtally`:
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
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  [ -n "$keep" ] && cp -r "$work" "$keep"
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

# Open on loopback (no accounts), nothing fetched, in-memory queue and bus: the run needs
# no service and leaves nothing behind but the temporary directory it removes.
env -u REDIS_URL -u NSQD_TCP_ADDRESS -u NSQD_HTTP_ADDRESS -u NSQLOOKUPD_HTTP_ADDRESS \
  -u AUTH -u DATABASE_URL -u LISTEN RUST_LOG=warn \
  "$bin" serve --listen "127.0.0.1:$port" --database-url "sqlite://$work/wordtally.db" \
  --workers 0 >"$work/serve.log" 2>&1 &
server_pid=$!

deadline=$((SECONDS + 60))
until curl -fsS -o /dev/null "$base/healthz" 2>/dev/null; do
  if ! kill -0 "$server_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
    echo "error: wordtally serve did not become ready on $base" >&2
    cat "$work/serve.log" >&2
    exit 1
  fi
  sleep 0.2
done

status=0
"$venv/bin/schemathesis" run "$base/api/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --workers 1 \
  --request-timeout 10 \
  --generation-with-security-parameters false \
  --report ndjson --report-ndjson-path "$work/events.ndjson" \
  --generation-database none \
  --no-color || status=$?

# Every request schemathesis sent is one recorded interaction in its event stream.
requests=$(python3 - "$work/events.ndjson" <<'EOF'
import json, sys
n = 0
for line in open(sys.argv[1]):
    event = json.loads(line)
    if "ScenarioFinished" in event:
        n += len(event["ScenarioFinished"]["recorder"].get("interactions", {}))
print(n)
EOF
)
echo "schemathesis: $requests requests generated"
if [ "$status" != 0 ]; then
  echo "schemathesis failed; the server's log (warnings and errors):" >&2
  tail -n 50 "$work/serve.log" >&2
fi
exit "$status"
