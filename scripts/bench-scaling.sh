#!/usr/bin/env bash
# Aggregator scale-out on the 3-node Kafka cluster: pre-fills one 6-partition topic (replication 3,
# min.insync.replicas 2) with BENCH_RECORDS generator messages, then measures 1, 2 and 3 aggregator
# instances sharing a consumer group (each count with a fresh database and group, on the same topic)
# from their start until the last window is in PostgreSQL, next to Kafka's ConsumerPerformance reading
# the same topic in the same run. Prints one table; asserts nothing (timings on a shared 2-core
# machine are noisy, and three brokers, PostgreSQL and the aggregators all share those two cores).
#
#   scripts/bench-scaling.sh                              # 2,000,000 records, 1, 2 and 3 instances
#   BENCH_RECORDS=500000 BENCH_INSTANCES=1,3 scripts/bench-scaling.sh
#   (also BENCH_STATE_DIR, BENCH_KAFKA_PORT, BENCH_PG_PORT: where its own cluster lives)
#
# The benchmark runs a 3-node cluster of its own (scripts/services.sh with KAFKA_NODES=3, in its own
# state directory and on its own ports: Kafka 39092-39097, PostgreSQL 35432), so it never stops or
# loads the cluster that scripts/test.sh or a drill may be using on the same machine; it is stopped
# at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

export KAFKA_NODES=3
export TICKPIPE_STATE_DIR=${BENCH_STATE_DIR:-${TMPDIR:-/tmp}/tickpipe-bench-scaling}
export TICKPIPE_CLUSTER_KAFKA_PORT=${BENCH_KAFKA_PORT:-39092} TICKPIPE_CLUSTER_PG_PORT=${BENCH_PG_PORT:-35432}
stop_cluster() { bash scripts/services.sh down >/dev/null 2>&1 || true; }
trap stop_cluster EXIT
bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"

echo "== building release binaries and benchmarks"
cargo build --release --locked -q -p tickpipe-aggregator --bins --examples

results=$(mktemp)
echo "== aggregator scale-out: ${BENCH_RECORDS:-2000000} records, 6 partitions, replication 3, instances ${BENCH_INSTANCES:-1,2,3}"
AGGREGATOR_BIN=target/release/aggregator BENCH_PARTITIONS=6 BENCH_REPLICATION=3 \
    BENCH_INSTANCES="${BENCH_INSTANCES:-1,2,3}" target/release/examples/bench_aggregator | tee "$results"

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo);" \
    "Kafka $(bash scripts/services.sh versions | head -n 1 | sed 's/^Kafka //') x $KAFKA_NODES nodes;" \
    "$(bash scripts/services.sh versions | tail -n 1)"
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
