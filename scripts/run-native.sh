#!/usr/bin/env bash
# Runs the whole pipeline without Docker: native Kafka and PostgreSQL (scripts/services.sh), then the
# generator, the aggregator and the API with the default configuration. Ctrl-C stops everything
# this script started (the services too, unless KEEP_SERVICES=1).
#
#   scripts/run-native.sh      then   curl -s localhost:8080/v1/get-prices   (or open localhost:8080)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"
cargo build --release --locked --bins
bash scripts/build-web.sh >/dev/null # the dashboard at /, served from web/dist (API_WEB_DIR's default)

pids=()
stop() {
    trap - INT TERM EXIT
    echo "stopping..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
    [[ -n "${KEEP_SERVICES:-}" ]] || bash scripts/services.sh down
}
trap stop INT TERM EXIT

export KAFKA_BROKERS DATABASE_URL
target/release/aggregator & pids+=("$!")
target/release/generator & pids+=("$!")
target/release/api & pids+=("$!")
echo "running: dashboard on http://localhost:8080/, API on http://localhost:8080/v1/get-prices, metrics on :9101 (generator), :9102 (aggregator) and :9103 (API); Ctrl-C stops"
wait -n "${pids[@]}" || true
