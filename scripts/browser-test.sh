#!/usr/bin/env bash
# The dashboard's browser test (web/tests/dashboard.spec.mjs): Debian's headless Chromium, driven by
# playwright-core, against the real pipeline on the native services. Builds the web assets and the
# debug binaries, makes a fresh topic and database, and lets the test start the history filler, the
# aggregator, the generator and the API on free ports (5 s windows, 1 s grace, so windows come
# often); removes the database afterwards. The screenshot lands in target/browser-test/.
#
#   scripts/browser-test.sh      # needs the services (scripts/services.sh up; started if down)
#
# Installs Debian's chromium and chromium-driver when /usr/bin/chromium is missing (as root, like
# CI). Environment: BROWSER_TEST_OUT (target/browser-test), CHROMIUM (/usr/bin/chromium),
# TICKPIPE_CARGO_LOCK (a file; when set, cargo runs under flock on it, to share a machine with
# other builds).
set -euo pipefail
cd "$(dirname "$0")/.."

export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
    echo "== browser test: installing Debian's chromium and chromium-driver"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
fi

echo "== browser test: building the web assets and the binaries"
bash scripts/build-web.sh >/dev/null
cargo_() {
    if [[ -n ${TICKPIPE_CARGO_LOCK:-} ]]; then flock "$TICKPIPE_CARGO_LOCK" cargo "$@"; else cargo "$@"; fi
}
cargo_ build --locked -q -p tickpipe-generator -p tickpipe-aggregator -p tickpipe-api --bins
cargo_ build --locked -q -p tickpipe-api --example dashboard_history

bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"

run_id="browser_$(date +%s)_$$"
export BROWSER_TEST_OUT=${BROWSER_TEST_OUT:-$PWD/target/browser-test}
export LOG_DIR="$BROWSER_TEST_OUT/logs/$run_id"
mkdir -p "$LOG_DIR"
admin_url=$DATABASE_URL
psql -q "$admin_url" -c "CREATE DATABASE $run_id"
drop_database() {
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $run_id WITH (FORCE)" || true
}
trap drop_database EXIT

export BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug"
export KAFKA_BROKERS KAFKA_TOPIC="$run_id" DATABASE_URL="${DATABASE_URL%/*}/$run_id"
export AGGREGATOR_WINDOW_SECS=5 AGGREGATOR_GRACE_MS=1000
export API_WEB_DIR="$PWD/web/dist"
echo "== browser test: topic and database $run_id, logs in $LOG_DIR"
node web/tests/dashboard.spec.mjs
