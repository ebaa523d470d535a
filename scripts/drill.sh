#!/usr/bin/env bash
# The fault drill: the generator at DRILL_RATE msgs/s for DRILL_SECS seconds into a 3-partition topic,
# two aggregator instances sharing it, one of them SIGKILLed at random moments every 20-40 s and
# started again, PostgreSQL restarted once and the Kafka broker restarted once. Then the generator
# stops, the aggregators drain, and an independent referee (aggregator/examples/drill_check.rs) reads
# the whole topic and compares every window. Exits non-zero on any difference.
#
#   scripts/drill.sh                    # 1,000 msgs/s for 5 minutes
#   DRILL_SECS=60 scripts/drill.sh      # the small version that scripts/test.sh runs
set -euo pipefail
cd "$(dirname "$0")/.."

DRILL_SECS=${DRILL_SECS:-300}
DRILL_RATE=${DRILL_RATE:-1000}

bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"

echo "== drill: building (debug profile, shared with the tests)"
cargo build --locked -q -p tickpipe-generator -p tickpipe-aggregator --bins --examples
bin=target/debug

run_id="drill_$(date +%s)_$$"
topic=$run_id
logs="$TICKPIPE_STATE_DIR/$run_id"
mkdir -p "$logs"
db_url="${DATABASE_URL%/*}/$run_id"
psql -q "$DATABASE_URL" -c "CREATE DATABASE $run_id"

common_env=(KAFKA_BROKERS="$KAFKA_BROKERS" KAFKA_TOPIC="$topic" METRICS_ADDR=127.0.0.1:0 LOG_FORMAT=json RUST_LOG=info)
aggregator_env=("${common_env[@]}" DATABASE_URL="$db_url" AGGREGATOR_GROUP_ID="$run_id" AGGREGATOR_DLQ_TOPIC="$run_id.dlq")

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

start_aggregator() { # slot
    env -i PATH="$PATH" "${aggregator_env[@]}" "$bin/aggregator" >>"$logs/aggregator-$1.log" 2>&1 &
    agg_pid[$1]=$!
    pids+=("$!")
}

echo "== drill: topic $topic, $DRILL_RATE msgs/s for $DRILL_SECS s, logs in $logs"
env -i PATH="$PATH" "${common_env[@]}" GENERATOR_RATE="$DRILL_RATE" \
    GENERATOR_MAX_MESSAGES=$((DRILL_RATE * DRILL_SECS)) GENERATOR_PARTITIONS=3 \
    "$bin/generator" >"$logs/generator.log" 2>&1 &
generator_pid=$!
pids+=("$generator_pid")
sleep 3 # the generator creates the topic; aggregators subscribe to an existing one

declare -A agg_pid
start_aggregator 0
start_aggregator 1

started=$SECONDS
next_kill=$((started + 20 + RANDOM % 21))
postgres_at=$((started + DRILL_SECS / 3))
kafka_at=$((started + 2 * DRILL_SECS / 3))
kills=0
while kill -0 "$generator_pid" 2>/dev/null; do
    now=$SECONDS
    if ((now >= next_kill)); then
        slot=$((RANDOM % 2))
        kill -KILL "${agg_pid[$slot]}" 2>/dev/null || true
        kills=$((kills + 1))
        echo "   t=$((now - started))s SIGKILL aggregator $slot; restarting it"
        start_aggregator "$slot"
        next_kill=$((now + 20 + RANDOM % 21))
    fi
    if ((postgres_at > 0 && now >= postgres_at)); then
        echo "   t=$((now - started))s restarting PostgreSQL"
        bash scripts/services.sh restart-postgres >/dev/null
        postgres_at=0
    fi
    if ((kafka_at > 0 && now >= kafka_at)); then
        echo "   t=$((now - started))s restarting the Kafka broker"
        bash scripts/services.sh restart-kafka >/dev/null
        kafka_at=0
    fi
    sleep 1
done
generator_status=0
wait "$generator_pid" || generator_status=$?
echo "   t=$((SECONDS - started))s generator finished (exit $generator_status) after $kills kills"

# The generator's closing log line carries its counts.
summary=$(grep '"generator stopped"' "$logs/generator.log" | tail -n 1 || true)
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], "?"))' "$summary" "$1" 2>/dev/null || echo "?"; }

echo "== drill: aggregators draining; the referee reads the whole topic"
status=0
env KAFKA_BROKERS="$KAFKA_BROKERS" KAFKA_TOPIC="$topic" DATABASE_URL="$db_url" \
    DRILL_PRODUCED="$(field sent)" DRILL_ACKNOWLEDGED="$(field acknowledged)" \
    "$bin/examples/drill_check" || status=$?
if ((generator_status != 0)); then
    echo "drill: the generator failed (exit $generator_status); see $logs/generator.log" >&2
    status=1
fi
exit "$status"
