#!/usr/bin/env bash
# The alert drill: the staleness alert of deploy/prometheus/rules/tickpipe.yml, once for real. A real
# Prometheus (Debian's `prometheus`, in a temporary directory, on a port of its own, scraping and
# evaluating every second) scrapes the generator, the aggregator and the API running natively
# against scripts/services.sh's Kafka and PostgreSQL, with short windows (ALERT_DRILL_WINDOW_SECS,
# default 10 s, grace 0.5 s: the alert's threshold is 2 * 10 + 0.5 = 20.5 s). Once a window has
# completed, the drill watches the healthy pipeline for two windows, during which
# TickpipePipelineStale must not even be pending; then it stops the aggregator (SIGTERM) and
# TickpipePipelineStale must be firing within threshold + its `for:` (1m) + 15 s of slack, and
# TickpipeTargetDown for the aggregator within its `for:` + 15 s. Everything it started is stopped
# on exit (its database dropped; the topic stays, as the fault drill's do). About 2 minutes.
#
# The Grafana dashboards' queries too, while the pipeline is healthy: the drill opens a stream
# (GET /v1/stream-prices), sends requests (one answered 400, one 404) and one record that is not
# JSON (Kafka's console producer), then scripts/grafana-panels.py runs every panel's PromQL of
# deploy/grafana/dashboards against this Prometheus: each must parse and answer data, and use only
# metric names the services' /metrics pages export ("grafana panels: N passed"); and the panels of
# deploy/grafana/check/broken-queries.json must each fail ("grafana panel controls: N passed").
#
#   scripts/alert-drill.sh          (scripts/test.sh runs it)
#
# Environment: ALERT_DRILL_WINDOW_SECS (10); ALERT_DRILL_BIN, a directory of prebuilt generator,
# aggregator and api binaries (default: build them, debug profile); KEEP_DRILL_DIR=1 keeps the
# temporary directory (the services' logs, Prometheus's config and data) also after a success.
set -euo pipefail
cd "$(dirname "$0")/.."

WINDOW_SECS=${ALERT_DRILL_WINDOW_SECS:-10}
GRACE_MS=500
RULES=$PWD/deploy/prometheus/rules/tickpipe.yml
FOR_SECS=60   # the `for:` of TickpipePipelineStale and TickpipeTargetDown in $RULES
SLACK_SECS=15
# Two windows plus the grace, rounded up: the staleness threshold.
THRESHOLD_SECS=$(((2 * WINDOW_SECS * 1000 + GRACE_MS + 999) / 1000))

for tool in prometheus promtool curl python3 psql java; do
    command -v "$tool" >/dev/null || { echo "alert drill: $tool is not on PATH (Debian: apt-get install prometheus)" >&2; exit 1; }
done
grep -q 'alert: TickpipePipelineStale' "$RULES" || { echo "alert drill: no TickpipePipelineStale in $RULES" >&2; exit 1; }

bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"
if [[ -n ${ALERT_DRILL_BIN:-} ]]; then
    bin=$ALERT_DRILL_BIN
else
    echo "== alert drill: building the services (debug profile, shared with the tests)"
    cargo build --locked -q -p tickpipe-generator -p tickpipe-aggregator -p tickpipe-api --bins
    bin="${CARGO_TARGET_DIR:-target}/debug"
fi

run_id="alertdrill_$(date +%s)_$$"
work=$(mktemp -d "/tmp/tickpipe-$run_id.XXXX")
db_url="${DATABASE_URL%/*}/$run_id"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
generator_port=$(free_port) aggregator_port=$(free_port) api_metrics_port=$(free_port)
api_port=$(free_port) prom_port=$(free_port)
prom="http://127.0.0.1:$prom_port"

declare -A pid=()
passed=0
cleanup() {
    local name
    for name in "${!pid[@]}"; do kill -TERM "${pid[$name]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $run_id WITH (FORCE)" 2>/dev/null || true
    if ((passed)) && [[ -z ${KEEP_DRILL_DIR:-} ]]; then
        rm -rf "$work"
    else
        echo "alert drill: logs, Prometheus config and data in $work"
        for name in prometheus generator aggregator api; do
            echo "--- last lines of $name.log"
            tail -n 15 "$work/$name.log" 2>/dev/null || true
        done
    fi
}
trap cleanup EXIT

# The scrape configuration a Prometheus of your own would have, with this drill's targets.
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $RULES
scrape_configs:
  - job_name: generator
    static_configs: [{targets: ["127.0.0.1:$generator_port"]}]
  - job_name: aggregator
    static_configs: [{targets: ["127.0.0.1:$aggregator_port"]}]
  - job_name: api
    static_configs: [{targets: ["127.0.0.1:$api_metrics_port"]}]
EOF
promtool check config "$work/prometheus.yml" >/dev/null

psql -q "$DATABASE_URL" -c "CREATE DATABASE $run_id"
common=(PATH="$PATH" KAFKA_BROKERS="$KAFKA_BROKERS" KAFKA_TOPIC="$run_id" RUST_LOG=info AGGREGATOR_WINDOW_SECS="$WINDOW_SECS")
start() { # name VAR=value...
    local name=$1
    shift
    env -i "${common[@]}" "$@" >"$work/$name.log" 2>&1 &
    pid[$name]=$!
}

echo "== alert drill: $WINDOW_SECS s windows, grace $GRACE_MS ms (threshold 2 x $WINDOW_SECS s + $GRACE_MS ms)," \
    "Prometheus on 127.0.0.1:$prom_port"
start generator METRICS_ADDR="127.0.0.1:$generator_port" GENERATOR_PARTITIONS=3 "$bin/generator"
sleep 3 # the generator creates the topic; the aggregator subscribes to an existing one
start aggregator METRICS_ADDR="127.0.0.1:$aggregator_port" DATABASE_URL="$db_url" AGGREGATOR_GRACE_MS="$GRACE_MS" \
    AGGREGATOR_METADATA_REFRESH_MS=1000 AGGREGATOR_GROUP_ID="$run_id" AGGREGATOR_DLQ_TOPIC="$run_id.dlq" "$bin/aggregator"
start api METRICS_ADDR="127.0.0.1:$api_metrics_port" API_BIND="127.0.0.1:$api_port" DATABASE_URL="$db_url" "$bin/api"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pid[prometheus]=$!

# Answers a question about Prometheus's state from its HTTP API (python3 reads the JSON):
#   targets          every target health "up" (prints the unhealthy ones otherwise; 3 expected)
#   boundary         prints api_complete_boundary_timestamp_seconds (fails while absent or 0)
#   state ALERTNAME  prints inactive, pending or firing
PROM_QUERY=$(
    cat <<'PY'
import json, sys, urllib.parse, urllib.request
base, what = sys.argv[1], sys.argv[2]
def get(path):
    with urllib.request.urlopen(base + path, timeout=2) as response:
        return json.load(response)["data"]
if what == "targets":
    targets = get("/api/v1/targets")["activeTargets"]
    bad = [f'{t["labels"]["job"]}={t["health"]}' for t in targets if t["health"] != "up"]
    print(" ".join(bad) or f"{len(targets)} targets up")
    sys.exit(1 if bad or len(targets) != 3 else 0)
if what == "boundary":
    result = get("/api/v1/query?query=" + urllib.parse.quote("api_complete_boundary_timestamp_seconds"))["result"]
    value = float(result[0]["value"][1]) if result else 0.0
    print(value)
    sys.exit(0 if value > 0 else 1)
if what == "state":
    states = [a["state"] for a in get("/api/v1/alerts")["alerts"] if a["labels"].get("alertname") == sys.argv[3]]
    print("firing" if "firing" in states else "pending" if "pending" in states else "inactive")
PY
)
ask() { python3 -c "$PROM_QUERY" "$prom" "$@" 2>/dev/null; }
fail() { echo "alert drill: FAILED: $*" >&2; exit 1; }

# What the Grafana panels need to have data beyond the pipeline's own records: a stream open (its
# delivery lag), a record that is not JSON (dead letters by reason, sent with Kafka's console
# producer in the background), and requests of the API, one answered 400 and one 404.
api="http://127.0.0.1:$api_port"
panel_traffic() {
    curl -sN "$api/v1/stream-prices" >/dev/null 2>&1 &
    pid[stream]=$!
    printf 'not json\n' | java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$TICKPIPE_KAFKA_LIBS/*" \
        org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$KAFKA_BROKERS" --topic "$run_id" \
        >"$work/producer.log" 2>&1 &
    pid[producer]=$!
    requests # a counter's first sample is its first request: rate() sees only the later ones
}
requests() {
    local path
    for path in /v1/get-prices '/v1/get-prices?ticker=AMZN' '/v1/get-prices?interval=1m' \
        '/v1/get-prices?limit=0' /no-such-path; do
        curl -s -o /dev/null "$api$path" || true
    done
}
metrics_urls=("http://127.0.0.1:$generator_port/metrics" "http://127.0.0.1:$aggregator_port/metrics"
    "http://127.0.0.1:$api_metrics_port/metrics")

# wait_for DESCRIPTION SECONDS COMMAND...: runs COMMAND every second until it succeeds.
wait_for() {
    local what=$1 deadline=$((SECONDS + $2)) out
    shift 2
    until out=$("$@"); do
        ((SECONDS < deadline)) || fail "no $what within the deadline (last: ${out:-no answer})"
        sleep 1
    done
    echo "  $what: $out"
}

started=$SECONDS
wait_for "targets all up" 60 ask targets
panel_traffic
wait_for "complete boundary" $((3 * WINDOW_SECS + 60)) ask boundary
first=$(ask boundary)
wait_for "boundary advancing" $((3 * WINDOW_SECS)) bash -c '[[ $(python3 -c "$1" "$2" boundary) != "$3" ]] && echo advanced' _ "$PROM_QUERY" "$prom" "$first"
echo "  healthy pipeline after $((SECONDS - started)) s; watching it for $((2 * WINDOW_SECS)) s"
healthy_until=$((SECONDS + 2 * WINDOW_SECS))
while ((SECONDS < healthy_until)); do
    state=$(ask state TickpipePipelineStale) || fail "Prometheus did not answer"
    [[ $state == inactive ]] || fail "TickpipePipelineStale is $state while the pipeline runs"
    sleep 1
done
echo "  TickpipePipelineStale inactive throughout"

echo "== alert drill: every Grafana panel's query against this Prometheus (scripts/grafana-panels.py)"
panels_started=$SECONDS
requests
sleep 2 # two scrapes of the API after the requests
python3 scripts/grafana-panels.py "$prom" "${metrics_urls[@]}" || fail "a Grafana panel's query"
python3 scripts/grafana-panels.py "$prom" "${metrics_urls[@]}" --controls deploy/grafana/check/broken-queries.json ||
    fail "a broken panel query was accepted"
echo "  Grafana panel queries checked in $((SECONDS - panels_started)) s"

echo "== alert drill: stopping the aggregator (SIGTERM)"
stopped=$SECONDS
kill -TERM "${pid[aggregator]}"
wait "${pid[aggregator]}" || true
unset 'pid[aggregator]'
deadline=$((stopped + THRESHOLD_SECS + FOR_SECS + SLACK_SECS))
pending_at="" firing_at="" down_at=""
while [[ -z $firing_at || -z $down_at ]]; do
    ((SECONDS <= deadline)) || break
    state=$(ask state TickpipePipelineStale) || state=unknown
    [[ -n $pending_at || $state != pending ]] || pending_at=$((SECONDS - stopped))
    [[ -n $firing_at || $state != firing ]] || firing_at=$((SECONDS - stopped))
    [[ -n $down_at || $(ask state TickpipeTargetDown) != firing ]] || down_at=$((SECONDS - stopped))
    sleep 1
done
echo "  after the stop: TickpipePipelineStale pending at ${pending_at:-never} s, firing at ${firing_at:-never} s" \
    "(allowed: $THRESHOLD_SECS + $FOR_SECS + $SLACK_SECS s); TickpipeTargetDown firing at ${down_at:-never} s"
[[ -n $firing_at ]] || fail "TickpipePipelineStale not firing $((deadline - stopped)) s after the aggregator stopped"
[[ -n $down_at ]] || fail "TickpipeTargetDown not firing $((deadline - stopped)) s after the aggregator stopped"
echo "  alert drill took $((SECONDS - started)) s after the services started"
passed=1
echo "alert-drill: 1 passed"
