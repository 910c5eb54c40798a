#!/usr/bin/env bash
# Runs every wordtally test: the deployment-file check (tests/deploy-check.sh), unit
# tests, the integration test binary (real PostgreSQL, Redis and the project's NSQ test
# broker), schemathesis against the OpenAPI document (PyPI, in a venv under target/) and
# the Playwright browser tests (Debian Chromium). Installs what is missing
# (Chromium, docker-compose, the npm packages); starts no service the
# machine already runs, and fails — never skips — when PostgreSQL or Redis is absent.
#
#   bash tests/run-all.sh
#
# Environment: WORDTALLY_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test),
# WORDTALLY_TEST_REDIS (default redis://127.0.0.1:6379), NSQD_TCP_ADDRESS /
# NSQD_HTTP_ADDRESS (use a real nsqd instead of the test broker).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

host_port() { # "scheme://user@host:port/db" -> "host port"
  local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}
  echo "${rest%%:*} ${rest##*:}"
}

require_service() { # name url default_port
  read -r host port <<<"$(host_port "$2")"
  [ "$port" = "$host" ] && port=$3
  if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    echo "error: $1 is not reachable at $host:$port." >&2
    echo "       The integration tests need it running (see README, 'Tests')." >&2
    exit 1
  fi
}

say "checking services"
require_service PostgreSQL "${WORDTALLY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}" 5432
require_service Redis "${WORDTALLY_TEST_REDIS:-redis://127.0.0.1:6379}" 6379
command -v redis-server >/dev/null || { echo "error: redis-server (binary) is needed for tests that stop and start their own Redis" >&2; exit 1; }

if [ ! -x /usr/bin/chromium ]; then
  say "installing Chromium (Debian package)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! command -v docker-compose >/dev/null; then
  say "installing docker-compose (Debian package; checks the compose file, no engine)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-compose >/dev/null
fi

CORPUS=/usr/share/doc/python3.11/html
if [ ! -d "$CORPUS" ]; then
  say "installing python3.11-doc (Debian package: the real pages the scanner is checked on)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3.11-doc >/dev/null
fi

say "deployment files without a Docker engine (tests/deploy-check.sh)"
bash tests/deploy-check.sh

say "unit and integration tests (cargo test)"
# WORDTALLY_CORPUS: the counting scanner must equal the html5ever oracle on every page of
# Python's documentation, for every option set (src/count/tests.rs).
WORDTALLY_CORPUS="$CORPUS" cargo test --locked --all-targets

say "building the binaries the browser tests drive"
cargo build --locked --bin wordtally --example nsq_test_broker

say "API fuzzing against /api/openapi.json (schemathesis, tests/schemathesis.sh)"
bash tests/schemathesis.sh

say "browser tests (Playwright, Debian Chromium)"
cd e2e
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
npx playwright test
