#!/usr/bin/env bash
# The dashboard's browser tests: Debian's headless Chromium, driven by playwright-core, against the
# real services. Builds the web assets and the debug binaries, then runs
#   - web/tests/dashboard.spec.mjs against the real pipeline: a fresh topic and database, the test
#     starts the history filler, the aggregator, the generator and the API on free ports (5 s
#     windows, 1 s grace, so windows come often);
#   - web/tests/dashboard-10k.spec.mjs with 10,000 tickers: a fresh database that the test seeds
#     (api/examples/dashboard_tickers.rs, 60 s windows) and the API over it (about 20 s);
#   - web/tests/cors.spec.mjs from two other origins (static sites on 127.0.0.1): a fresh database
#     that the test seeds (dashboard_tickers again, 3 tickers) and the API over it with
#     API_CORS_ORIGINS naming one of them;
# and removes the databases afterwards. The screenshots land in target/browser-test/.
#
#   scripts/browser-test.sh             # all three; needs the services (started if down)
#   scripts/browser-test.sh cors        # only those named: dashboard, 10k, cors
#
# The API runs with its rate limits on, at their defaults (API_RATE_LIMIT_RPS=100,
# API_RATE_LIMIT_BURST=400) unless those variables are set: every spec fails on any HTTP error the
# page gets, so a passing run shows the dashboard stays under them (the tests' own reads use a
# bucket of their own, see web/tests/pipeline.mjs).
#
# Installs Debian's chromium and chromium-driver when /usr/bin/chromium is missing (as root, like
# CI). Environment: BROWSER_TEST_OUT (target/browser-test), CHROMIUM (/usr/bin/chromium),
# TICKPIPE_CARGO_LOCK (a file; when set, cargo runs under flock on it, to share a machine with
# other builds). The binaries are copied aside (BROWSER_TEST_OUT/bin/<run>, removed afterwards)
# under that lock: another build into the same CARGO_TARGET_DIR could otherwise replace the API
# between its start and its restart by the test.
set -euo pipefail
cd "$(dirname "$0")/.."

export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
    echo "== browser test: installing Debian's chromium and chromium-driver"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
fi

selected=" ${*:-dashboard 10k cors} "
run() { [[ $selected == *" $1 "* ]]; }
run_id="browser_$(date +%s)_$$"
export BROWSER_TEST_OUT=${BROWSER_TEST_OUT:-$PWD/target/browser-test}
export LOG_DIR="$BROWSER_TEST_OUT/logs/$run_id"
export BIN_DIR="$BROWSER_TEST_OUT/bin/$run_id"
mkdir -p "$LOG_DIR" "$BIN_DIR/examples"
trap 'rm -rf "$BIN_DIR"' EXIT

echo "== browser test: building the web assets and the binaries"
bash scripts/build-web.sh >/dev/null
if [[ -n ${TICKPIPE_CARGO_LOCK:-} ]]; then
    exec 9>>"$TICKPIPE_CARGO_LOCK"
    flock 9
fi
cargo build --locked -q -p tickpipe-generator -p tickpipe-aggregator -p tickpipe-api --bins
cargo build --locked -q -p tickpipe-api --example dashboard_history --example dashboard_tickers
target_dir="${CARGO_TARGET_DIR:-$PWD/target}/debug"
cp "$target_dir"/{generator,aggregator,api} "$BIN_DIR/"
cp "$target_dir"/examples/{dashboard_history,dashboard_tickers} "$BIN_DIR/examples/"
if [[ -n ${TICKPIPE_CARGO_LOCK:-} ]]; then
    exec 9>&- # releases the lock (nothing started below inherits it)
fi

bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"

admin_url=$DATABASE_URL
psql -q "$admin_url" -c "CREATE DATABASE $run_id"
cleanup() {
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $run_id WITH (FORCE)" || true
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS ${run_id}_10k WITH (FORCE)" || true
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS ${run_id}_cors WITH (FORCE)" || true
    rm -rf "$BIN_DIR"
}
trap cleanup EXIT

export KAFKA_BROKERS KAFKA_TOPIC="$run_id" DATABASE_URL="${DATABASE_URL%/*}/$run_id"
export AGGREGATOR_WINDOW_SECS=5 AGGREGATOR_GRACE_MS=1000
export API_WEB_DIR="$PWD/web/dist"
echo "== browser test: topic and database $run_id, logs in $LOG_DIR"
# Each runs even if another fails: each prints its own "browser: N passed, M failed".
status=0
if run dashboard; then
    node web/tests/dashboard.spec.mjs || status=1
fi

if run 10k; then
    echo "== browser test, 10,000 tickers: database ${run_id}_10k, logs in $LOG_DIR/10k"
    psql -q "$admin_url" -c "CREATE DATABASE ${run_id}_10k"
    mkdir -p "$LOG_DIR/10k"
    DATABASE_URL="${DATABASE_URL%/*}/${run_id}_10k" AGGREGATOR_WINDOW_SECS=60 LOG_DIR="$LOG_DIR/10k" \
        node web/tests/dashboard-10k.spec.mjs || status=1
fi

if run cors; then
    echo "== browser test, CORS: database ${run_id}_cors, logs in $LOG_DIR/cors"
    psql -q "$admin_url" -c "CREATE DATABASE ${run_id}_cors"
    mkdir -p "$LOG_DIR/cors"
    DATABASE_URL="${DATABASE_URL%/*}/${run_id}_cors" AGGREGATOR_WINDOW_SECS=60 LOG_DIR="$LOG_DIR/cors" \
        node web/tests/cors.spec.mjs || status=1
fi
exit $status
