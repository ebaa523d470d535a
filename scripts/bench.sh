#!/usr/bin/env bash
# Runs the generator, aggregator and API benchmarks against the native Kafka and PostgreSQL and
# prints one table: each figure, the reference it is compared with (Kafka's ProducerPerformance /
# ConsumerPerformance measured in the same run, or the issue's target) and the ratio.
#
#   scripts/bench.sh                       # full size (about 10 minutes)
#   BENCH_PACING_SECS=10 BENCH_MESSAGES=200000 BENCH_RECORDS=200000 BENCH_SIZES=10000 scripts/bench.sh
#   BENCH_STREAM_SUBSCRIBERS=200 BENCH_STREAM_SECS=5 scripts/bench.sh   # a smaller stream section
#   BENCH_SECTIONS=api BENCH_SIZES=1000000 scripts/bench.sh    # only the API against pgbench
#   BENCH_SECTIONS=history scripts/bench.sh   # bar queries at 10 thousand and 10 million windows
#   BENCH_HISTORY_WINDOWS=10,2880 BENCH_SECTIONS=history scripts/bench.sh   # a smaller large size
#   BENCH_SECTIONS=rollups scripts/bench.sh   # this aggregator against the one before the rollups
#   BENCH_SECTIONS=traces scripts/bench.sh    # the aggregator, export off and on, against the one before traces
# Each API query prints requests/s (wrk), pgbench tps on the same SQL in the same run, their ratio,
# the API's CPU per request and, from pg_stat_statements, what PostgreSQL did per request.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }

bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"

echo "== building release binaries and benchmarks"
cargo build --release --locked -q --bins --examples

results=$(mktemp)
sections="${BENCH_SECTIONS:-generator,aggregator,rollups,api,stream,history}"
target="${CARGO_TARGET_DIR:-target}"
run() { # title example section
    [[ ",$sections," == *",$3,"* ]] || return 0
    echo "== $1"
    "$target/release/examples/$2" | tee -a "$results"
}
AGGREGATOR_BIN=$target/release/aggregator API_BIN=$target/release/api export AGGREGATOR_BIN API_BIN
# bench_api reads the SQL the API sends from PostgreSQL's log, to run pgbench on exactly that.
export TICKPIPE_PG_LOG="${TICKPIPE_STATE_DIR:-${TMPDIR:-/tmp}/tickpipe-services}/logs/postgres.log"
run "generator: pacing and throughput" bench_generator generator
run "aggregator: backfill throughput and memory" bench_aggregator aggregator
# The aggregator binary at git revision $1, built from a worktree in target/$2-src into target/$2
# (its own target directory: the revision's lock file may differ); prints the binary's path.
aggregator_at() { # rev name
    [[ -d "target/$2-src" ]] || git worktree add -q --detach -f "target/$2-src" "$1"
    git -C "target/$2-src" checkout -q --detach "$1"
    echo "== building the aggregator at $1" >&2
    CARGO_TARGET_DIR="$PWD/target/$2" cargo build --release --locked -q \
        --manifest-path "target/$2-src/Cargo.toml" -p tickpipe-aggregator --bin aggregator >&2
    echo "target/$2/release/aggregator"
}
# Rollups and group commit (issue 20): this aggregator against the one before the rollups existed
# (BENCH_BASELINE_REV, built in target/baseline from a worktree in target/baseline-src), both on
# the same pre-filled topic in the same run: the generator's three stocks, then BENCH_ROLLUPS_TICKERS
# (1000) tickers, whose windows hold many rows and so many bar upserts.
if [[ ",$sections," == *",rollups,"* ]]; then
    baseline_rev="${BENCH_BASELINE_REV:-c306999}"
    BENCH_BASELINE_BIN=$(aggregator_at "$baseline_rev" baseline)
    export BENCH_BASELINE_BIN
    for tickers in 0 "${BENCH_ROLLUPS_TICKERS:-1000}"; do
        BENCH_TICKERS=$tickers run "rollups: against $baseline_rev, BENCH_TICKERS=$tickers" bench_aggregator rollups
    done
    unset BENCH_BASELINE_BIN
fi
run "api: latency under load, against pgbench on the same SQL" bench_api api
# Traces (issue 24): the aggregator with OTEL_EXPORTER_OTLP_ENDPOINT unset, then set to a local
# OTLP/HTTP sink (scripts/otlp-sink.py), each against the same aggregator before traces existed
# (BENCH_TRACES_REV) on one pre-filled topic in one run: what the tracing code costs off and on.
if [[ ",$sections," == *",traces,"* ]]; then
    traces_rev="${BENCH_TRACES_REV:-e3f31c7}"
    BENCH_BASELINE_BIN=$(aggregator_at "$traces_rev" traces-baseline)
    export BENCH_BASELINE_BIN
    traces_run() { # label
        echo "== traces: $1, against the aggregator at $traces_rev"
        "$target/release/examples/bench_aggregator" | sed "s/^bench|/bench|traces $1: /" | tee -a "$results"
    }
    traces_run "export off"
    sink_port="${BENCH_OTLP_PORT:-14318}"
    python3 scripts/otlp-sink.py "$sink_port" > "$results.sink" &
    sink=$!
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" traces_run "export on"
    kill -TERM "$sink"
    wait "$sink" || true
    read -r requests bytes < "$results.sink"
    echo "traces export on: the sink received $requests OTLP/HTTP requests, $bytes bytes"
    unset BENCH_BASELINE_BIN
fi
# History: BENCH_HISTORY_TICKERS (1000) tickers over BENCH_HISTORY_WINDOWS (10 and 10080 windows:
# 10 thousand and 10 million windows), each ingested by the aggregator binary from a pre-filled
# topic; then the aggregator's memory and commit time at 10 and 10,000 tickers.
BENCH_MODE=history run "history: bar queries at 10 thousand and 10 million windows" bench_api history
# Live stream: BENCH_STREAM_SUBSCRIBERS (1000 and 10000, comma-separated) subscribers while changes
# are committed at BENCH_STREAM_RATE (10) commits/s for BENCH_STREAM_SECS (20); one socket each on
# both sides, so raise the limit (10,000 streams need more than the usual 1024).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
IFS=, read -r -a stream_sizes <<< "${BENCH_STREAM_SUBSCRIBERS:-1000,10000}"
for subscribers in "${stream_sizes[@]}"; do
    BENCH_STREAM_SUBSCRIBERS=$subscribers run "api: live stream fan-out, $subscribers subscribers" bench_stream stream
done

kafka_version=$(bash scripts/services.sh versions | grep -i kafka | head -n 1)
pg_version=$(bash scripts/services.sh versions | grep -i postgres | head -n 1)
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $kafka_version; $pg_version"
python3 - "$results" <<'PY'
import sys
rows = [line.rstrip("\n").split("|")[1:] for line in open(sys.argv[1]) if line.startswith("bench|")]
header = ["figure", "value", "unit", "reference", "reference value", "ratio"]
widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(6)]
line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
print(line(header))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))
PY
