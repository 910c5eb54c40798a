#!/usr/bin/env bash
# The crawl benchmark (issue 19 "Targets"): wordtally against the `spider` crate and
# Scrapy, side by side in one sitting. Builds nothing itself except when asked (BUILD=1):
#   bash benches/crawl/setup.sh                                  # nginx :8089, Scrapy venv
#   (cd benches/crawl/spider-peer && CARGO_TARGET_DIR=/tmp/spider-peer-target cargo build --release)
#   cargo build --release --bin wordtally [--example nsq_test_broker]   # the latter for prod-*
#   bash benches/crawl/run.sh [ROUNDS=3] [VARIANTS=spider,scrapy,embedded-32]
# VARIANTS: spider, scrapy, embedded-W (serve --workers W, SQLite), prod-W (serve --workers 0
# + two `worker --workers W`, Postgres + Redis + NSQ test broker). See run.py.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [ "${BUILD:-0}" = 1 ]; then
  (cd "$HERE/spider-peer" && CARGO_TARGET_DIR=/tmp/spider-peer-target cargo build --release)
  (cd "$REPO" && cargo build --release --bin wordtally --example nsq_test_broker)
fi
bash "$HERE/setup.sh" >/dev/null
exec python3 "$HERE/run.py" "$@"
