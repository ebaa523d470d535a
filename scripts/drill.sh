#!/usr/bin/env bash
# The fault drill: the generator at DRILL_RATE msgs/s for DRILL_SECS seconds into a 3-partition topic,
# two aggregator instances sharing it, one of them SIGKILLed at random moments every 20-40 s and
# started again, plus infrastructure faults. Then the generator stops, the aggregators drain, and an
# independent referee (aggregator/examples/drill_check.rs) reads the whole topic and compares every
# window. Exits non-zero on any difference.
#
#   scripts/drill.sh                    # 1,000 msgs/s for 5 minutes on the single node
#   DRILL_SECS=60 scripts/drill.sh      # the small version that scripts/test.sh runs
#   KAFKA_NODES=3 scripts/drill.sh      # on the 3-node cluster (scripts/services.sh starts it)
#
# Single node (the default): PostgreSQL is restarted once (at a third of the run) and the Kafka broker
# once (at two thirds, SIGTERM).
#
# Cluster (KAFKA_NODES=3): the topic has replication factor 3 and min.insync.replicas=2 (the brokers'
# default), and so does the dead-letter topic, created here before the aggregators start. At a third
# of the run the node that leads the most partitions of the topic (TopicCommand --describe; a tie goes
# to the active KRaft controller if it is among them, else to the lowest id) is SIGKILLed, and a third
# of the run later it is started again. The drill then also reports the longest gap in acknowledged produce, the
# longest time the aggregators wrote nothing (with DRILL_WINDOW_SECS-wide windows, default 5 s on the
# cluster, so a stall is not hidden by the 30 s between the writes of default windows) and how many
# generator sends failed (the generator then exits non-zero, which fails the drill).
#
# Environment: DRILL_SECS (300), DRILL_RATE (1000), DRILL_WINDOW_SECS (30 single node, 5 cluster),
# KAFKA_NODES (1), DRILL_RUST_LOG (the services' RUST_LOG, default info; e.g.
# info,tickpipe_aggregator::processor=debug logs every late record).
set -euo pipefail
cd "$(dirname "$0")/.."

DRILL_SECS=${DRILL_SECS:-300}
DRILL_RATE=${DRILL_RATE:-1000}
NODES=${KAFKA_NODES:-1}
export KAFKA_NODES=$NODES
cluster=0
((NODES == 1)) || cluster=1
if ((cluster)); then DRILL_WINDOW_SECS=${DRILL_WINDOW_SECS:-5}; else DRILL_WINDOW_SECS=${DRILL_WINDOW_SECS:-30}; fi

bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"
if ((cluster)); then state_dir=$TICKPIPE_CLUSTER_STATE_DIR; else state_dir=$TICKPIPE_STATE_DIR; fi

echo "== drill: building (debug profile, shared with the tests)"
cargo build --locked -q -p tickpipe-generator -p tickpipe-aggregator --bins --examples
bin="${CARGO_TARGET_DIR:-target}/debug"

run_id="drill_$(date +%s)_$$"
topic=$run_id
logs="$state_dir/$run_id"
mkdir -p "$logs"
db_url="${DATABASE_URL%/*}/$run_id"
psql -q "$DATABASE_URL" -c "CREATE DATABASE $run_id"

# Kafka's own command-line tools, from the jars scripts/services.sh fetched (log4j2's default
# configuration: errors only; C1 and the serial collector start a short-lived JVM faster).
kafka_tool() { java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$TICKPIPE_KAFKA_LIBS/*" "org.apache.kafka.tools.$1" "${@:2}"; }
describe_topic() { kafka_tool TopicCommand --bootstrap-server "$KAFKA_BROKERS" --describe --topic "$topic" 2>&1 | grep 'Topic:'; }

now_ms() { date +%s%3N; }
events="$logs/events.tsv" # epoch ms <TAB> what happened, for the figures at the end
event() { printf '%s\t%s\n' "$(now_ms)" "$1" >>"$events"; }

replication=1
if ((cluster)); then
    replication=3
    kafka_tool TopicCommand --bootstrap-server "$KAFKA_BROKERS" --create --if-not-exists \
        --topic "$run_id.dlq" --partitions 1 --replication-factor 3 >/dev/null
fi

common_env=(KAFKA_BROKERS="$KAFKA_BROKERS" KAFKA_TOPIC="$topic" LOG_FORMAT=json RUST_LOG="${DRILL_RUST_LOG:-info}")
aggregator_env=("${common_env[@]}" METRICS_ADDR=127.0.0.1:0 DATABASE_URL="$db_url" AGGREGATOR_GROUP_ID="$run_id"
    AGGREGATOR_DLQ_TOPIC="$run_id.dlq" AGGREGATOR_WINDOW_SECS="$DRILL_WINDOW_SECS")

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

# The generator's metrics on a port of its own, sampled by the watcher below.
metrics_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

echo "== drill: topic $topic ($NODES Kafka node(s), replication $replication), $DRILL_RATE msgs/s for $DRILL_SECS s," \
    "${DRILL_WINDOW_SECS} s windows, logs in $logs"
t0=$(now_ms)
event start
env -i PATH="$PATH" "${common_env[@]}" METRICS_ADDR="127.0.0.1:$metrics_port" GENERATOR_RATE="$DRILL_RATE" \
    GENERATOR_MAX_MESSAGES=$((DRILL_RATE * DRILL_SECS)) GENERATOR_FLUSH_TIMEOUT_SECS=180 GENERATOR_PARTITIONS=3 KAFKA_REPLICATION_FACTOR=$replication \
    "$bin/generator" >"$logs/generator.log" 2>&1 &
generator_pid=$!
pids+=("$generator_pid")

# The watcher: every 50 ms the generator's acknowledged/failed counters, every 250 ms the number of
# prices in the table (any change is a write by some aggregator). One line per sample:
#   g <epoch ms> <acknowledged> <failed>      d <epoch ms> <prices in window_prices>
# It is the drill's clock for the figures; it reads, it never decides anything the referee checks.
python3 - "$metrics_port" "$db_url" >"$logs/samples.txt" 2>"$logs/watcher.log" <<'PY' &
import subprocess, sys, time, urllib.request
port, db_url = sys.argv[1], sys.argv[2]
next_db = 0.0
while True:
    now = time.time()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
        values = {l.split()[0]: l.split()[1] for l in body.splitlines() if l and not l.startswith("#")}
        print("g", int(now * 1000), values.get("generator_messages_acknowledged_total", "0"),
              values.get("generator_messages_failed_total", "0"), flush=True)
    except OSError:
        pass
    if now >= next_db:
        next_db = now + 0.25
        query = subprocess.run(["psql", "-XtAq", db_url, "-c",
                                "SELECT coalesce(sum(sample_count), 0) FROM window_prices"],
                               capture_output=True, text=True)
        if query.returncode == 0 and query.stdout.strip():
            print("d", int(now * 1000), query.stdout.strip(), flush=True)
    time.sleep(max(0.0, 0.05 - (time.time() - now)))
PY
watcher_pid=$!
pids+=("$watcher_pid")
sleep 3 # the generator creates the topic; aggregators subscribe to an existing one

declare -A agg_pid
start_aggregator 0
start_aggregator 1

# Prints the node that leads the most partitions of the topic; a tie goes to the active controller.
# The two lookups are JVM tools, which take 5-15 s to start on a busy 2-core machine: they run side by
# side, and the whole kill runs in the background (kill_leader) so the drill's clock keeps going.
leading_node() {
    local description controller
    kafka_tool MetadataQuorumCommand --bootstrap-server "$KAFKA_BROKERS" describe --status \
        >"$logs/quorum.txt" 2>&1 &
    local quorum_pid=$!
    description=$(describe_topic) || return 1
    wait "$quorum_pid" || true
    controller=$(awk '/^LeaderId:/ {print $2}' "$logs/quorum.txt")
    {
        echo "$description"
        echo "active controller: node ${controller:-?}"
    } | sed 's/^/     /' >&2
    echo "$description" | awk -v controller="$controller" '
        /Partition:/ { for (i = 1; i < NF; i++) if ($i == "Leader:") count[$(i + 1)]++ }
        END {
            for (node in count) if (count[node] > best) best = count[node]
            chosen = ""
            for (node in count) if (count[node] == best && (chosen == "" || node + 0 < chosen + 0)) chosen = node
            if (controller != "" && count[controller] == best) chosen = controller
            print chosen
        }'
}

# Finds the leading node, SIGKILLs it and writes its number to $logs/killed-node.
kill_leader() {
    local node
    node=$(leading_node) || true
    if [[ -z "$node" ]]; then
        echo "drill: could not tell which node leads the partitions" >&2
        return 1
    fi
    bash scripts/services.sh kill-kafka-node "$node" 2>/dev/null
    event "SIGKILL Kafka node $node"
    echo "   t=$((SECONDS - started))s SIGKILL Kafka node $node (leads the most partitions)"
    echo "$node" >"$logs/killed-node"
}

started=$SECONDS
next_kill=$((started + 20 + RANDOM % 21))
postgres_at=0
kafka_at=0
leader_kill_at=0
leader_start_at=0
leader_killer=
if ((cluster)); then
    leader_kill_at=$((started + DRILL_SECS / 3))
else
    postgres_at=$((started + DRILL_SECS / 3))
    kafka_at=$((started + 2 * DRILL_SECS / 3))
fi
kills=0
killed_node=
node_starter=
while kill -0 "$generator_pid" 2>/dev/null; do
    now=$SECONDS
    if ((now >= next_kill)); then
        slot=$((RANDOM % 2))
        kill -KILL "${agg_pid[$slot]}" 2>/dev/null || true
        event "SIGKILL aggregator $slot"
        kills=$((kills + 1))
        echo "   t=$((now - started))s SIGKILL aggregator $slot; restarting it"
        start_aggregator "$slot"
        next_kill=$((now + 20 + RANDOM % 21))
    fi
    if ((postgres_at > 0 && now >= postgres_at)); then
        echo "   t=$((now - started))s restarting PostgreSQL"
        event "PostgreSQL restart"
        bash scripts/services.sh restart-postgres >/dev/null
        postgres_at=0
    fi
    if ((kafka_at > 0 && now >= kafka_at)); then
        echo "   t=$((now - started))s restarting the Kafka broker"
        event "Kafka broker restart"
        bash scripts/services.sh restart-kafka >/dev/null
        kafka_at=0
    fi
    if ((leader_kill_at > 0 && now >= leader_kill_at)); then
        echo "   t=$((now - started))s looking up the partition leaders of $topic"
        kill_leader &
        leader_killer=$!
        leader_kill_at=0
    fi
    # The node comes back a third of the run after it was killed.
    if [[ -z "$killed_node" && -s "$logs/killed-node" ]]; then
        killed_node=$(cat "$logs/killed-node")
        leader_start_at=$((now + DRILL_SECS / 3))
    fi
    if ((leader_start_at > 0 && now >= leader_start_at)); then
        echo "   t=$((now - started))s starting Kafka node $killed_node again"
        event "start Kafka node $killed_node"
        # In the background: the loop keeps killing aggregators while the node starts.
        bash scripts/services.sh start-kafka-node "$killed_node" >"$logs/start-node.log" 2>&1 &
        node_starter=$!
        leader_start_at=0
    fi
    sleep 1
done
generator_status=0
wait "$generator_pid" || generator_status=$?
event "generator finished"
echo "   t=$((SECONDS - started))s generator finished (exit $generator_status) after $kills aggregator kills"

# The generator's closing log line carries its counts.
summary=$(grep '"generator stopped"' "$logs/generator.log" | tail -n 1 || true)
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], "?"))' "$summary" "$1" 2>/dev/null || echo "?"; }

status=0
if ((cluster)); then
    if [[ -z "$leader_killer" ]] || ! wait "$leader_killer"; then
        echo "drill: no Kafka node was killed" >&2
        status=1
    fi
    killed_node=$(cat "$logs/killed-node" 2>/dev/null || true)
    if [[ -n "$killed_node" && -z "$node_starter" ]]; then
        # The run ended before the node was due back (a very short DRILL_SECS).
        event "start Kafka node $killed_node"
        bash scripts/services.sh start-kafka-node "$killed_node" >"$logs/start-node.log" 2>&1 &
        node_starter=$!
    fi
    if [[ -n "$node_starter" ]] && ! wait "$node_starter"; then
        echo "drill: Kafka node $killed_node did not start again; see $logs/start-node.log" >&2
        status=1
    fi
    echo "== drill: partition leaders and in-sync replicas after node $killed_node's return"
    describe_topic | sed 's/^/     /' || true
fi

echo "== drill: aggregators draining; the referee reads the whole topic"
env KAFKA_BROKERS="$KAFKA_BROKERS" KAFKA_TOPIC="$topic" DATABASE_URL="$db_url" AGGREGATOR_WINDOW_SECS="$DRILL_WINDOW_SECS" \
    DRILL_PRODUCED="$(field sent)" DRILL_ACKNOWLEDGED="$(field acknowledged)" \
    "$bin/examples/drill_check" || status=$?
# The figures, once the referee has seen the aggregators drain (the watcher sampled all along).
if ((cluster)); then
    kill -TERM "$watcher_pid" 2>/dev/null || true
    echo "== drill: figures (t = seconds since the generator started)"
    python3 - "$logs/samples.txt" "$events" "$t0" "$DRILL_WINDOW_SECS" "$(field failed)" <<'PY' || true
import sys
samples, events_file, t0, window, failed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
series = {"g": [], "d": []}
for line in open(samples):
    kind, ms, value, *_ = line.split()
    series[kind].append((int(ms), float(value)))
events = [(int(ms), what) for ms, what in (l.rstrip("\n").split("\t", 1) for l in open(events_file))]
kill = next((ms for ms, what in events if what.startswith("SIGKILL Kafka")), None)
t = lambda ms: f"t={(ms - t0) / 1000:.1f}s"

def gaps(samples):
    """(length, from, to) between consecutive increases of a counter."""
    changes, last = [], None
    for ms, value in samples:
        if last is not None and value > last:
            changes.append(ms)
        last = value if last is None else max(last, value)
    return [(b - a, a, b) for a, b in zip(changes, changes[1:])]

def describe(gap):
    return f"{gap[0] / 1000:.1f} s ({t(gap[1])} to {t(gap[2])})" if gap else "no samples"

for ms, what in events:
    if what.startswith(("SIGKILL", "start Kafka")):
        print(f"  {t(ms):>8}  {what}")
# After the generator stops, the last windows wait one idle lag (AGGREGATOR_IDLE_LAG_MS, 30 s) for
# records a failover might still hold back: that wait is not a stall, so gaps end at the stop.
stop = next((ms for ms, what in events if what == "generator finished"), None)
for kind, label in (("g", "acknowledged produce"), ("d", "aggregator writes (any partition)")):
    found = [g for g in gaps(series[kind]) if stop is None or g[2] <= stop]
    # "Around the leader loss": gaps that overlap the 30 s after the kill.
    near = [g for g in found if kill is not None and g[2] >= kill and g[1] <= kill + 30000]
    print(f"  longest gap in {label}: around the leader loss {describe(max(near, default=None))};"
          f" whole run {describe(max(found, default=None))}")
print(f"  (with records flowing and nothing failing, every {window} s window is written about 2 s after it ends)")
print(f"  generator sends failed: {failed}")
PY
fi
if ((generator_status != 0)); then
    echo "drill: the generator failed (exit $generator_status, $(field failed) sends failed); see $logs/generator.log" >&2
    status=1
fi
exit "$status"
