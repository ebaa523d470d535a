#!/usr/bin/env bash
# The test command: starts a real Kafka broker and a real PostgreSQL (scripts/services.sh), runs
# formatting, lints and every test against them, and stops the services even when something fails.
#
#   scripts/test.sh            # everything
#   KEEP_SERVICES=1 scripts/test.sh   # leave the services running afterwards (faster re-runs)
set -euo pipefail
cd "$(dirname "$0")/.."

services=scripts/services.sh
stop_services() {
    if [[ -z "${KEEP_SERVICES:-}" ]]; then
        bash "$services" down || true
        TICKPIPE_SECURE=1 bash "$services" down || true
    fi
}
trap stop_services EXIT

bash "$services" up
eval "$(bash "$services" env)"
# The secure services beside them (issue 22: Kafka SASL_SSL, PostgreSQL TLS only, PgBouncer in
# transaction mode), for crates/e2e's tests; their variables are named TICKPIPE_SECURE_*.
TICKPIPE_SECURE=1 bash "$services" up >/dev/null
eval "$(TICKPIPE_SECURE=1 bash "$services" env)"
echo "== services: KAFKA_BROKERS=$KAFKA_BROKERS DATABASE_URL=${DATABASE_URL%%@*}@..."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== size limits (scripts/check-size.py: files <= 400 lines, functions <= 60, test code excepted)"
python3 scripts/check-size.py

# Alerting (issue 24): the Prometheus config, the alert rules and their unit tests, in seconds.
echo "== promtool (scripts/promtool.sh)"
bash scripts/promtool.sh

# Grafana (issue 24): the dashboards against Grafana's published schema (@grafana/schema, tsc), in
# seconds; their queries run against a real Prometheus in the alert drill below.
echo "== Grafana dashboards (scripts/grafana-check.sh)"
bash scripts/grafana-check.sh

echo "== cargo test"
cargo test --workspace --locked -- --nocapture 2>&1 | tee "${TICKPIPE_STATE_DIR:-/tmp}/cargo-test.log"

# --- dashboard (issue 15): the page at / in Debian's headless Chromium (installed if missing) against
# the real pipeline: charts and table equal /v1/get-prices, live windows, an API restart, intervals ---
echo "== browser test (scripts/browser-test.sh)"
bash scripts/browser-test.sh
# --- end of the browser test ---

# --- API contract (issue 10): Schemathesis, every check, against the API's /v1/openapi.json ---
echo "== schemathesis (scripts/schemathesis.sh)"
bash scripts/schemathesis.sh
# --- end of the Schemathesis block ---

# --- fuzzing (issue 10): the message decoder under cargo-fuzz for FUZZ_SECS (default 60) ---
echo "== fuzz: scripts/fuzz.sh (FUZZ_SECS=${FUZZ_SECS:-60})"
bash scripts/fuzz.sh
# --- end fuzzing ---


# --- alert drill (issue 24): the staleness alert once for real: a real Prometheus scraping the
# native services, the aggregator stopped; and every Grafana panel's query against it; about 2 minutes ---
echo "== alert drill (scripts/alert-drill.sh)"
bash scripts/alert-drill.sh
# --- end of the alert drill ---

echo "== fault drill, small scale (scripts/drill.sh; DRILL_SECS=300 for the full one)"
DRILL_SECS="${DRILL_SECS:-60}" bash scripts/drill.sh

# --- cluster drill (issue 16): the same drill on a 3-node Kafka cluster (replication 3, min ISR 2),
# with the leader of the most partitions SIGKILLed and restarted. The cluster runs beside the single
# node (own ports, PostgreSQL and state subdirectory) and is stopped afterwards whatever happens,
# unless KEEP_SERVICES is set, as for the single node. ---
echo "== fault drill on a 3-node Kafka cluster (KAFKA_NODES=3 scripts/drill.sh, DRILL_SECS=${CLUSTER_DRILL_SECS:-60})"
stop_cluster() { [[ -n "${KEEP_SERVICES:-}" ]] || KAFKA_NODES=3 bash "$services" down || true; }
trap 'stop_cluster; stop_services' EXIT
KAFKA_NODES=3 bash "$services" up >/dev/null
KAFKA_NODES=3 DRILL_SECS="${CLUSTER_DRILL_SECS:-60}" bash scripts/drill.sh
stop_cluster
trap stop_services EXIT
# --- end of the cluster drill ---
