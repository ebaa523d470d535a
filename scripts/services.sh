#!/usr/bin/env bash
# Starts and stops the real services the tests and benchmarks run against, without Docker:
#   - Apache Kafka (KRaft), from Maven Central jars: one node acting as broker and controller (the
#     default), or with KAFKA_NODES=3 a cluster of three such nodes forming one controller quorum;
#   - a throwaway PostgreSQL cluster, from the Debian server binaries.
#
#   scripts/services.sh up                # start both (no-op if already running), print `export` lines
#   scripts/services.sh env               # print the `export` lines only:  eval "$(scripts/services.sh env)"
#   scripts/services.sh down              # stop both, delete their data (logs are kept)
#   scripts/services.sh restart-postgres  # fast stop + start on the same data and port
#   scripts/services.sh restart-kafka     # SIGTERM + start on the same log dir and port (every node, in turn)
#   scripts/services.sh stop-postgres     # fast stop (data kept); start-postgres starts it again
#   scripts/services.sh stop-kafka-node N # SIGTERM node N (1-based; data kept)
#   scripts/services.sh kill-kafka-node N # SIGKILL node N, as a crash would (data kept)
#   scripts/services.sh start-kafka-node N  # start node N again and wait until it is ready
#   scripts/services.sh status            # say what is running (exit 1 unless all of it is)
#   scripts/services.sh versions          # print the Kafka and PostgreSQL versions, one per line
#
#   KAFKA_NODES=3 scripts/services.sh up  # the same for a 3-node cluster (every subcommand takes it)
#
# The cluster (KAFKA_NODES=3) is a separate set of services that runs beside the single node: its own
# state directory ($TICKPIPE_STATE_DIR/cluster), its own ports (Kafka nodes on 19092, 19094, 19096 with
# their controllers on the next port up; PostgreSQL on 15432) and its own PostgreSQL. Its brokers
# default to replication factor 3 and min.insync.replicas=2, for every topic created without an
# explicit replication factor and for Kafka's internal topics (consumer offsets, transaction state).
# Its `env` prints a bootstrap list of all nodes and `export KAFKA_NODES=3`, so later calls in a shell
# that evaluated it address the cluster too.
#
# Settings (environment):
#   KAFKA_NODES           1 (default) or 3..9: Kafka nodes, each a broker and a KRaft controller
#   TICKPIPE_KAFKA_PORT   single node: broker port, default 9092; the controller listens on the next port
#   TICKPIPE_PG_PORT      single node: PostgreSQL port, default 5432
#   TICKPIPE_CLUSTER_KAFKA_PORT  cluster: node N's broker port is this + 2(N-1), default 19092
#   TICKPIPE_CLUSTER_PG_PORT     cluster: PostgreSQL port, default 15432
#   TICKPIPE_STATE_DIR    pid files, logs and data, default ${TMPDIR:-/tmp}/tickpipe-services
#                         (the cluster uses its subdirectory cluster/)
#   TICKPIPE_CACHE_DIR    where the Kafka jars are kept between runs, default ~/.cache/tickpipe
#   TICKPIPE_PG_BIN       PostgreSQL server binaries, default the newest /usr/lib/postgresql/*/bin
#   TICKPIPE_SERVICES_TIMEOUT  seconds to wait for each service to get ready, default 120
#
# Progress goes to stderr and the `export` lines to stdout, so `eval "$(scripts/services.sh up)"` works.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

# Keep in sync with <kafka.version> in scripts/kafka/pom.xml; it names the jar cache directory.
KAFKA_VERSION=4.1.1
KAFKA_POM="$REPO_ROOT/scripts/kafka/pom.xml"
KAFKA_LOG4J="$REPO_ROOT/scripts/kafka/log4j2.properties"

NODES="${KAFKA_NODES:-1}"
[[ "$NODES" =~ ^[1-9]$ && "$NODES" != 2 ]] ||
    { echo "services: ERROR: KAFKA_NODES must be 1 or 3..9 (two voters survive no failure), not '$NODES'" >&2; exit 2; }
BASE_STATE_DIR="${TICKPIPE_STATE_DIR:-${TMPDIR:-/tmp}/tickpipe-services}"
if ((NODES == 1)); then
    STATE_DIR="$BASE_STATE_DIR"
else
    # A subdirectory, so that `down` of either set never touches the other's data.
    STATE_DIR="$BASE_STATE_DIR/cluster"
fi
# HOME may be unset under some CI runners; fall back to the passwd entry (which is what mvn uses too).
CACHE_DIR="${TICKPIPE_CACHE_DIR:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/tickpipe}"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
TIMEOUT="${TICKPIPE_SERVICES_TIMEOUT:-120}"

LOG_DIR="$STATE_DIR/logs"
PORTS_FILE="$STATE_DIR/ports"
# Everything Kafka keeps; with one node this is also the node's own directory (see select_node).
KAFKA_ROOT="$STATE_DIR/kafka"
# Set per node by select_node.
NODE=
KAFKA_DIR=
KAFKA_DATA=
KAFKA_PROPS=
KAFKA_PID_FILE=
KAFKA_LOG=
# PostgreSQL's own directory is owned by the server's OS user (PostgreSQL refuses to run as root).
PG_DIR="$STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_SOCKET_DIR="$PG_DIR/run"
PG_LOG="$LOG_DIR/postgres.log"
PG_USER=postgres
PG_PASSWORD=postgres
PG_DATABASE=stocks

say() { echo "services: $*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------------------
# Ports. Once services were started from a state directory, its ports are fixed (the KRaft controller's
# address is written into the metadata log at format time, and `env` must describe what is running), so
# every subcommand reads them back from the state directory instead of trusting the current environment.
# ---------------------------------------------------------------------------------------------------------
BASE_PORT=
KAFKA_PORT=
CONTROLLER_PORT=
PG_PORT=

load_ports() {
    if ((NODES == 1)); then
        BASE_PORT="${TICKPIPE_KAFKA_PORT:-9092}"
        PG_PORT="${TICKPIPE_PG_PORT:-5432}"
    else
        BASE_PORT="${TICKPIPE_CLUSTER_KAFKA_PORT:-19092}"
        PG_PORT="${TICKPIPE_CLUSTER_PG_PORT:-15432}"
    fi
    if [[ -f "$PORTS_FILE" ]]; then
        local saved_kafka saved_pg saved_nodes
        read -r saved_kafka saved_pg saved_nodes <"$PORTS_FILE"
        saved_nodes="${saved_nodes:-1}"
        if [[ "$saved_nodes" != "$NODES" ]]; then
            die "$STATE_DIR was set up for $saved_nodes Kafka node(s), not KAFKA_NODES=$NODES:" \
                "run 'KAFKA_NODES=$saved_nodes $0 down' first or use another TICKPIPE_STATE_DIR"
        fi
        if [[ "$1" == strict && ("$saved_kafka" != "$BASE_PORT" || "$saved_pg" != "$PG_PORT") ]]; then
            die "$STATE_DIR was set up for Kafka port $saved_kafka and PostgreSQL port $saved_pg," \
                "not $BASE_PORT/$PG_PORT: run '$0 down' first or use another TICKPIPE_STATE_DIR"
        fi
        BASE_PORT="$saved_kafka"
        PG_PORT="$saved_pg"
    fi
    select_node 1
}

save_ports() {
    if ((NODES == 1)); then echo "$BASE_PORT $PG_PORT" >"$PORTS_FILE"; else echo "$BASE_PORT $PG_PORT $NODES" >"$PORTS_FILE"; fi
}

# Points the KAFKA_* globals at node $1. A single node keeps the layout this script always had
# (kafka/, logs/kafka.log), so a broker started by an earlier version is still found.
select_node() {
    NODE="$1"
    if ((NODES == 1)); then
        KAFKA_DIR="$KAFKA_ROOT"
        KAFKA_LOG="$LOG_DIR/kafka.log"
    else
        KAFKA_DIR="$KAFKA_ROOT/node-$NODE"
        KAFKA_LOG="$LOG_DIR/kafka-$NODE.log"
    fi
    KAFKA_DATA="$KAFKA_DIR/data"
    KAFKA_PROPS="$KAFKA_DIR/server.properties"
    KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
    KAFKA_PORT=$((BASE_PORT + 2 * (NODE - 1)))
    CONTROLLER_PORT=$((KAFKA_PORT + 1))
}

node_arg() {
    [[ "${1:-}" =~ ^[1-9]$ ]] && (($1 <= NODES)) || die "name a node from 1 to $NODES (KAFKA_NODES=$NODES)"
    select_node "$1"
}

broker_list() {
    local n list=()
    for ((n = 1; n <= NODES; n++)); do list+=("127.0.0.1:$((BASE_PORT + 2 * (n - 1)))"); done
    (IFS=,; echo "${list[*]}")
}

# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------

# True if something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp: no nc/ss needed).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# kill -0 alone is fooled by zombies, which linger in containers whose PID 1 does not reap orphans.
pid_alive() {
    local pid="$1"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    local state
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != Z ]]
}

# The Kafka PID from the pid file, but only if that process still is our broker (PIDs get reused).
kafka_pid() {
    [[ -f "$KAFKA_PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$KAFKA_PID_FILE")"
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    echo "$pid"
}

# The last 50 lines of a log, from byte offset $2 on: the logs are appended to across runs, and an earlier
# run's shutdown lines would only mislead.
log_tail() {
    local file="$1" offset="${2:-0}"
    say "last 50 lines of $file (this run):"
    if [[ -f "$file" ]]; then tail -c +"$((offset + 1))" "$file" | tail -n 50 >&2; else say "(no log file)"; fi
}

log_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# A marker line in the (appended, kept-across-down) logs, so a reader can tell the runs apart.
log_marker() { echo "===== services.sh: $1 at $(date -u +%Y-%m-%dT%H:%M:%SZ) =====" >>"$2"; }

need_root_to_install() {
    [[ $EUID -eq 0 ]] || die "$1 is missing and only root can install it (apt-get install -y $2)"
}

apt_install() {
    say "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# ---------------------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------------------

ensure_java_and_maven() {
    if ! command -v java >/dev/null; then
        need_root_to_install java openjdk-17-jre-headless
        apt_install openjdk-17-jre-headless
    fi
    local major
    major="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')"
    [[ "${major%%.*}" -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17 or newer; 'java' is $major"
    if ! kafka_libs_present && ! command -v mvn >/dev/null; then
        need_root_to_install mvn maven
        apt_install maven
    fi
}

kafka_libs_present() {
    [[ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" &&
        -f "$KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar" &&
        -n "$(compgen -G "$KAFKA_LIBS/log4j-slf4j2-impl-*.jar")" ]]
}

# Fetch the broker and tools jars once. Maven downloads into ~/.m2 (reused offline later) and copies them
# into a temporary directory that is renamed into place, so an interrupted download never leaves a
# half-filled libs directory that passes the check above.
ensure_kafka_libs() {
    if kafka_libs_present; then
        return
    fi
    say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
    local tmp
    tmp="$(dirname "$KAFKA_LIBS")/libs.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if ! mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
        log_tail "$tmp.mvn.log"
        rm -rf "$tmp"
        die "mvn could not fetch the Kafka jars (see above)"
    fi
    rm -f "$tmp.mvn.log"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    kafka_libs_present || die "the Kafka jars are still missing from $KAFKA_LIBS after mvn"
}

# Same GC settings as Kafka's own kafka-run-class.sh; the heap is sized for a laptop/CI box (2 cores). The
# cluster's three nodes get a smaller heap each: they run beside the single node and the tests.
if ((NODES == 1)); then KAFKA_HEAP=(-Xms256m -Xmx1g); else KAFKA_HEAP=(-Xms128m -Xmx512m); fi
KAFKA_JAVA=(java "${KAFKA_HEAP[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*")

kafka_java() { "${KAFKA_JAVA[@]}" "$@"; }

write_kafka_properties() {
    if ((NODES == 1)); then
        cat >"$KAFKA_PROPS" <<EOF
# Written by scripts/services.sh: a single node that is both broker and KRaft controller, for tests.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=1
auto.create.topics.enable=true
# One node: every internal topic must make do with one replica, or group and transaction
# coordination (which the aggregator's exactly-once path needs) never becomes available.
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests start consumers and expect them to get partitions at once, not after the default 3 s.
group.initial.rebalance.delay.ms=0
EOF
        return
    fi
    local n voters=()
    for ((n = 1; n <= NODES; n++)); do voters+=("$n@127.0.0.1:$((BASE_PORT + 2 * (n - 1) + 1))"); done
    cat >"$KAFKA_PROPS" <<EOF
# Written by scripts/services.sh: node $NODE of a $NODES-node cluster; every node is a broker and a
# KRaft controller, and the controllers form one quorum (a static voter set).
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=1
auto.create.topics.enable=true
# Three replicas, two of which must have a write before acks=all is answered: one node can fail
# without losing an acknowledged record or refusing writes. These are defaults, so they also apply to
# a topic created without an explicit replication factor; a topic created with one keeps it.
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
# A replica that lost its data must never become leader (the default; stated because it is the point).
unclean.leader.election.enable=false
# Tests start consumers and expect them to get partitions at once, not after the default 3 s.
group.initial.rebalance.delay.ms=0
EOF
}

# One cluster id for all nodes of this state directory, made once.
cluster_id() {
    local file="$KAFKA_ROOT/cluster.id" id
    if [[ -s "$file" ]]; then
        cat "$file"
        return
    fi
    # Logging would share stdout with the id, so keep only the line that looks like one.
    id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG" |
        grep -E '^[A-Za-z0-9_-]{22}$' | tail -n 1 || true)"
    [[ -n "$id" ]] || die "kafka.tools.StorageTool random-uuid printed no cluster id (see $KAFKA_LOG)"
    echo "$id" >"$file"
    echo "$id"
}

# A broker refuses to start on an unformatted log dir ("No readable meta.properties files found").
format_kafka_storage() {
    if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
        return
    fi
    local id log_offset quorum=()
    log_offset="$(log_size "$KAFKA_LOG")"
    id="$(cluster_id)"
    say "formatting Kafka storage in $KAFKA_DATA (cluster id $id)"
    log_marker "formatting Kafka storage (cluster id $id)" "$KAFKA_LOG"
    # --standalone goes with controller.quorum.bootstrap.servers (a dynamic quorum of this one node);
    # a cluster's static controller.quorum.voters is formatted without it.
    ((NODES > 1)) || quorum=(--standalone)
    if ! kafka_java kafka.tools.StorageTool format "${quorum[@]}" -t "$id" -c "$KAFKA_PROPS" \
        >>"$KAFKA_LOG" 2>&1; then
        log_tail "$KAFKA_LOG" "$log_offset"
        die "formatting Kafka storage failed"
    fi
}

# Start the current node in its own session (setsid) with nohup, so it outlives this script and the shell
# that ran it, and is not hit by a Ctrl-C aimed at the caller. The pid is written by the process that then
# becomes java (exec), so it is the broker's own pid whatever setsid does. Prints the log offset at which
# this run's lines begin, for wait_for_kafka.
launch_kafka_node() {
    local log_offset
    log_offset="$(log_size "$KAFKA_LOG")"
    log_marker "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT" "$KAFKA_LOG"
    say "starting Kafka $KAFKA_VERSION $(node_label)on 127.0.0.1:$KAFKA_PORT (controller $CONTROLLER_PORT), log $KAFKA_LOG"
    rm -f "$KAFKA_PID_FILE"
    # shellcheck disable=SC2016 # $$ and "$@" are for the inner bash
    setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID_FILE" \
        "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_PROPS" </dev/null >>"$KAFKA_LOG" 2>&1 &
    echo "$log_offset"
}

launch_kafka() {
    local log_offset
    log_offset="$(launch_kafka_node)" || exit 1
    wait_for_kafka "$log_offset"
}

node_label() { ((NODES == 1)) || echo "node $NODE "; }
status_label() { if ((NODES == 1)); then echo ":"; else echo " node $NODE:"; fi; }

# Ready = this run's log says "Kafka Server started" and the broker port takes connections. (A cluster
# node gets there only once a majority of the controllers is up.)
wait_for_kafka() {
    local log_offset="$1" deadline=$((SECONDS + TIMEOUT)) pid=
    while ((SECONDS < deadline)); do
        if [[ -z "$pid" && -s "$KAFKA_PID_FILE" ]]; then
            pid="$(cat "$KAFKA_PID_FILE")"
        fi
        if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
            log_tail "$KAFKA_LOG" "$log_offset"
            die "Kafka $(node_label)exited during startup (see above)"
        fi
        if tail -c +"$((log_offset + 1))" "$KAFKA_LOG" | grep -q 'Kafka Server started' &&
            port_open "$KAFKA_PORT"; then
            say "Kafka $(node_label)is ready on 127.0.0.1:$KAFKA_PORT (pid $pid)"
            return
        fi
        sleep 0.5
    done
    log_tail "$KAFKA_LOG" "$log_offset"
    # Don't leave a half-started broker behind to grab the port later; a new `up` starts afresh.
    # (With a tiny timeout the launcher may not have written the pid file yet.)
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s "$KAFKA_PID_FILE" ]] && break
        sleep 0.1
    done
    stop_kafka
    die "Kafka $(node_label)did not get ready within ${TIMEOUT}s"
}

# Prepares the current node and launches it unless it runs already; prints the log offset to wait
# from, or nothing when there is nothing to wait for.
start_kafka_node() {
    local pid
    if pid="$(kafka_pid)"; then
        if port_open "$KAFKA_PORT"; then
            say "Kafka $(node_label)is already running (pid $pid, 127.0.0.1:$KAFKA_PORT)"
            return
        fi
        # Still starting (e.g. an `up` that was interrupted): the port check is what matters here.
        say "Kafka $(node_label)(pid $pid) is running but 127.0.0.1:$KAFKA_PORT does not answer yet; waiting"
        echo 0
        return
    fi
    if port_open "$KAFKA_PORT" || port_open "$CONTROLLER_PORT"; then
        die "port $KAFKA_PORT or $CONTROLLER_PORT is taken by a process this script did not start;" \
            "stop it or set $( ((NODES == 1)) && echo TICKPIPE_KAFKA_PORT || echo TICKPIPE_CLUSTER_KAFKA_PORT)"
    fi
    mkdir -p "$KAFKA_DIR" "$KAFKA_DATA"
    write_kafka_properties
    format_kafka_storage
    launch_kafka_node
}

# Every node is launched before any is waited for: a cluster node does not finish starting until a
# majority of the controller quorum is up.
start_kafka() {
    ensure_java_and_maven
    ensure_kafka_libs
    mkdir -p "$KAFKA_ROOT"
    local n offsets=()
    for ((n = 1; n <= NODES; n++)); do
        select_node "$n"
        offsets[n]="$(start_kafka_node)" || exit 1
    done
    for ((n = 1; n <= NODES; n++)); do
        select_node "$n"
        [[ -z "${offsets[n]}" ]] || wait_for_kafka "${offsets[n]}"
    done
    select_node 1
}

# SIGTERM lets the broker close its logs cleanly (a later start skips log recovery); SIGKILL after 30 s.
# With KILL as $1, SIGKILL at once: a crash, for drills (the node's data is kept).
stop_kafka() {
    local signal="${1:-TERM}" pid
    if ! pid="$(kafka_pid)"; then
        rm -f "$KAFKA_PID_FILE"
        say "Kafka $(node_label)is not running"
        return
    fi
    say "stopping Kafka $(node_label)(pid $pid, SIG$signal)"
    kill -"$signal" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while pid_alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if pid_alive "$pid"; then
        say "Kafka $(node_label)did not stop within 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while pid_alive "$pid"; do sleep 0.1; done
    fi
    rm -f "$KAFKA_PID_FILE"
    log_marker "Kafka stopped (SIG$signal)" "$KAFKA_LOG"
}

# `down`: a single node as above. A cluster's nodes all get SIGTERM at once: one by one, the last node
# would wait out the timeout, because its controlled shutdown needs a controller quorum that left with
# the others; and the data is deleted next anyway. SIGKILL for whatever still runs after 15 s.
stop_all_kafka() {
    if ((NODES == 1)); then
        stop_kafka
        return
    fi
    local n pid pids=() deadline=$((SECONDS + 15))
    for ((n = 1; n <= NODES; n++)); do
        select_node "$n"
        if pid="$(kafka_pid)"; then
            say "stopping Kafka node $n (pid $pid, SIGTERM)"
            kill -TERM "$pid" 2>/dev/null || true
            pids[n]="$pid"
        fi
    done
    for n in "${!pids[@]}"; do
        select_node "$n"
        while pid_alive "${pids[n]}" && ((SECONDS < deadline)); do sleep 0.1; done
        if pid_alive "${pids[n]}"; then
            say "Kafka node $n did not stop in time; sending SIGKILL"
            kill -KILL "${pids[n]}" 2>/dev/null || true
            while pid_alive "${pids[n]}"; do sleep 0.1; done
        fi
        rm -f "$KAFKA_PID_FILE"
        log_marker "Kafka stopped" "$KAFKA_LOG"
    done
    select_node 1
}

# "Kafka 4.1.1": as the broker itself last logged it (AppInfoParser), else the pinned version.
kafka_version_line() {
    local v
    v="$(grep -o 'Kafka version: [^ ]*' "$KAFKA_LOG" 2>/dev/null | tail -n 1 || true)"
    v="${v#Kafka version: }"
    echo "Kafka ${v:-$KAFKA_VERSION}"
}

# ---------------------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------------------
PG_BIN=

find_pg_bin() {
    if [[ -n "${TICKPIPE_PG_BIN:-}" ]]; then
        PG_BIN="$TICKPIPE_PG_BIN"
    else
        PG_BIN="$(find_newest_pg_bin)"
        if [[ -z "$PG_BIN" ]]; then
            need_root_to_install "PostgreSQL (initdb)" postgresql-15
            install_postgres
            PG_BIN="$(find_newest_pg_bin)"
        fi
    fi
    [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] || die "no initdb/pg_ctl in '$PG_BIN'"
}

find_newest_pg_bin() {
    local initdb
    initdb="$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 || true)"
    [[ -n "$initdb" ]] && dirname "$initdb"
    return 0
}

# Debian's package creates and may start a default "main" cluster on 5432, which would collide with ours;
# this script only wants the binaries, so any cluster the install started is stopped again.
install_postgres() {
    apt_install postgresql-15
    if command -v pg_lsclusters >/dev/null; then
        pg_lsclusters --no-header 2>/dev/null | while read -r ver name _port status _; do
            if [[ "$status" == online* ]]; then
                say "stopping the packaged cluster $ver/$name that the install started"
                pg_ctlcluster "$ver" "$name" stop || true
            fi
        done
    fi
}

# Run a PostgreSQL server program as the cluster owner: `postgres` when we are root, else ourselves.
# From / because runuser keeps the cwd, which the postgres user may not be allowed to enter.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    else
        "$@"
    fi
}

ensure_pg_os_user() {
    [[ $EUID -eq 0 ]] || return 0
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        say "creating the '$PG_USER' system user (PostgreSQL will not run as root)"
        useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql --shell /bin/bash "$PG_USER"
    fi
}

pg_running() { as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; }

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

init_postgres() {
    if [[ -f "$PG_DATA/PG_VERSION" ]]; then
        return
    fi
    local log_offset
    log_offset="$(log_size "$PG_LOG")"
    # Leftovers of an interrupted initdb would make the next one refuse the non-empty directory.
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA" "$PG_SOCKET_DIR"
    if [[ $EUID -eq 0 ]]; then
        chown -R "$PG_USER:" "$PG_DIR"
        chown "$PG_USER:" "$PG_LOG"
        as_pg test -w "$PG_DIR" ||
            die "user $PG_USER cannot write $PG_DIR (a parent directory is closed to it?);" \
                "set TICKPIPE_STATE_DIR under /tmp"
    fi
    chmod 700 "$PG_DATA"
    say "initdb in $PG_DATA"
    local pwfile="$PG_DIR/pwfile"
    echo "$PG_PASSWORD" >"$pwfile"
    [[ $EUID -ne 0 ]] || chown "$PG_USER:" "$pwfile"
    # Password (SCRAM) over TCP, which is what DATABASE_URL uses; peer over the private socket directory.
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --pwfile="$pwfile" \
        --auth-host=scram-sha-256 --auth-local=peer --encoding=UTF8 --no-locale \
        >>"$PG_LOG" 2>&1; then
        rm -f "$pwfile"
        log_tail "$PG_LOG" "$log_offset"
        die "initdb failed"
    fi
    rm -f "$pwfile"
    # The socket directory is our own: Debian's default /var/run/postgresql may be absent or in use.
    cat >>"$PG_DATA/postgresql.conf" <<EOF

# --- added by scripts/services.sh ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
# cargo test runs many tests at once, each with its own connection pool.
max_connections = 200
EOF
}

launch_postgres() {
    local log_offset
    log_offset="$(log_size "$PG_LOG")"
    log_marker "starting PostgreSQL on 127.0.0.1:$PG_PORT" "$PG_LOG"
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT, log $PG_LOG"
    # pg_ctl detaches the server into its own session; -w waits until it accepts connections.
    # pg_stat_statements is loaded (not created) so that a profile can `CREATE EXTENSION` it in a
    # database of its own: the API benchmark's per-statement figures (README, Benchmarks).
    # shellcheck disable=SC2094 # both the server (-l) and pg_ctl's own errors append to the one log
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" \
        -o "-c shared_preload_libraries=pg_stat_statements" >/dev/null 2>>"$PG_LOG"; then
        log_tail "$PG_LOG" "$log_offset"
        # Like Kafka: no half-started server left behind (a second try in case the server had not
        # written its postmaster.pid yet, which pg_ctl stop needs).
        as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate >/dev/null 2>&1 ||
            { sleep 1 && as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate >/dev/null 2>&1; } || true
        die "PostgreSQL did not start within ${TIMEOUT}s"
    fi
    wait_for_postgres "$log_offset"
}

# pg_ctl -w watches the socket; tests connect over TCP with a password, so check that path too.
wait_for_postgres() {
    local log_offset="${1:-0}" deadline=$((SECONDS + TIMEOUT))
    until pg_ready; do
        if ((SECONDS >= deadline)); then
            log_tail "$PG_LOG" "$log_offset"
            die "PostgreSQL does not accept connections on 127.0.0.1:$PG_PORT after ${TIMEOUT}s"
        fi
        sleep 0.5
    done
    say "PostgreSQL is ready on 127.0.0.1:$PG_PORT"
}

# Idempotent: ALTER USER and a create-if-missing, over the same TCP+password path the tests use.
setup_database() {
    local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres)
    PGPASSWORD="$PG_PASSWORD" "${psql[@]}" -c "ALTER USER $PG_USER PASSWORD '$PG_PASSWORD'" >/dev/null
    if [[ -z "$(PGPASSWORD="$PG_PASSWORD" "${psql[@]}" -tA \
        -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" ]]; then
        say "creating database $PG_DATABASE"
        PGPASSWORD="$PG_PASSWORD" "${psql[@]}" -c "CREATE DATABASE $PG_DATABASE" >/dev/null
    fi
}

start_postgres() {
    find_pg_bin
    if [[ -f "$PG_DATA/PG_VERSION" ]] && pg_running; then
        if pg_ready; then
            say "PostgreSQL is already running (127.0.0.1:$PG_PORT, data $PG_DATA)"
            return
        fi
        wait_for_postgres
        return
    fi
    if pg_ready; then
        die "port $PG_PORT is taken by a PostgreSQL this script did not start; stop it or set TICKPIPE_PG_PORT"
    fi
    if port_open "$PG_PORT"; then
        die "port $PG_PORT is taken by another process; stop it or set TICKPIPE_PG_PORT"
    fi
    ensure_pg_os_user
    touch "$PG_LOG"
    [[ $EUID -ne 0 ]] || chown "$PG_USER:" "$PG_LOG"
    init_postgres
    launch_postgres
    setup_database
}

stop_postgres() {
    find_pg_bin
    if [[ ! -f "$PG_DATA/PG_VERSION" ]] || ! pg_running; then
        say "PostgreSQL is not running"
        return
    fi
    say "stopping PostgreSQL (pg_ctl stop -m fast)"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null 2>>"$PG_LOG" || {
        # A fast stop that hangs means a stuck backend; the cluster is throwaway, so don't block on it.
        say "fast stop did not finish; using immediate"
        as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w >/dev/null 2>>"$PG_LOG" || true
    }
    log_marker "PostgreSQL stopped" "$PG_LOG"
}

pg_version_line() {
    if [[ -x "$PG_BIN/postgres" ]]; then "$PG_BIN/postgres" --version; else echo "postgres: not installed"; fi
}

# ---------------------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------------------

print_env() {
    local pg_bin="${PG_BIN:-${TICKPIPE_PG_BIN:-$(find_newest_pg_bin)}}"
    # Addresses need no quoting (and %q would escape the commas of a list).
    printf 'export KAFKA_BROKERS=%s\n' "$(broker_list)"
    printf 'export %s=%q\n' \
        DATABASE_URL "postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE" \
        TICKPIPE_KAFKA_LIBS "$KAFKA_LIBS" \
        TICKPIPE_PG_BIN "$pg_bin" \
        TICKPIPE_PG_DATA "$PG_DATA"
    # The cluster's directory is not exported as TICKPIPE_STATE_DIR: the cluster lives in a
    # subdirectory of that, so the single node's and the cluster's scripts keep finding their own.
    if ((NODES == 1)); then
        printf 'export %s=%q\n' TICKPIPE_STATE_DIR "$STATE_DIR"
    else
        printf 'export %s=%q\n' KAFKA_NODES "$NODES" TICKPIPE_CLUSTER_STATE_DIR "$STATE_DIR"
    fi
}

prepare_state_dir() {
    mkdir -p "$STATE_DIR" "$LOG_DIR"
    # The postgres OS user has to reach its own directory and log file inside, whatever the umask.
    chmod 755 "$STATE_DIR" "$LOG_DIR"
}

cmd_up() {
    local started=$SECONDS
    load_ports strict
    prepare_state_dir
    save_ports
    start_kafka
    start_postgres
    say "$(kafka_version_line); $(pg_version_line)"
    say "services up in $((SECONDS - started))s (state in $STATE_DIR)"
    print_env
}

cmd_down() {
    load_ports lenient
    stop_all_kafka
    if [[ -d "$PG_DATA" ]]; then
        stop_postgres
    fi
    # Only what this script created; the logs stay for post-mortems (CI runs `down` on exit). The
    # single node's `down` leaves the cluster/ subdirectory alone.
    rm -rf "$KAFKA_ROOT" "$PG_DIR" "$PORTS_FILE"
    say "stopped; removed the data in $STATE_DIR (logs kept in $LOG_DIR)"
}

cmd_restart_postgres() {
    load_ports lenient
    [[ -f "$PG_DATA/PG_VERSION" ]] || die "no PostgreSQL cluster in $PG_DATA; run '$0 up' first"
    stop_postgres
    launch_postgres
}

# Stop and start apart, for tests that watch a service answer 503 while the database is down.
cmd_stop_postgres() {
    load_ports lenient
    [[ -f "$PG_DATA/PG_VERSION" ]] || die "no PostgreSQL cluster in $PG_DATA; run '$0 up' first"
    stop_postgres
}

cmd_start_postgres() {
    load_ports lenient
    [[ -f "$PG_DATA/PG_VERSION" ]] || die "no PostgreSQL cluster in $PG_DATA; run '$0 up' first"
    find_pg_bin
    pg_running && { say "PostgreSQL is already running"; return; }
    launch_postgres
}

# A cluster is restarted one node at a time (a rolling restart), so it stays available throughout.
cmd_restart_kafka() {
    load_ports lenient
    local n
    for ((n = 1; n <= NODES; n++)); do
        select_node "$n"
        [[ -f "$KAFKA_DATA/meta.properties" ]] || die "no Kafka data in $KAFKA_DATA; run '$0 up' first"
        stop_kafka
        launch_kafka
    done
}

# One node of the cluster (or the single node as node 1), for drills: stop (SIGTERM) or kill (SIGKILL)
# it, keeping its data, and start it again.
cmd_stop_kafka_node() { # signal node
    load_ports lenient
    node_arg "${2:-}"
    [[ -f "$KAFKA_DATA/meta.properties" ]] || die "no Kafka data in $KAFKA_DATA; run '$0 up' first"
    stop_kafka "$1"
}

cmd_start_kafka_node() {
    load_ports lenient
    node_arg "${1:-}"
    [[ -f "$KAFKA_DATA/meta.properties" ]] || die "no Kafka data in $KAFKA_DATA; run '$0 up' first"
    local pid
    if pid="$(kafka_pid)"; then
        say "Kafka $(node_label)is already running (pid $pid)"
        return
    fi
    launch_kafka
}

cmd_status() {
    load_ports lenient
    local pid rc=0 n
    for ((n = 1; n <= NODES; n++)); do
        select_node "$n"
        if pid="$(kafka_pid)"; then
            if port_open "$KAFKA_PORT"; then
                say "Kafka$(status_label) running (pid $pid, 127.0.0.1:$KAFKA_PORT)"
            else
                say "Kafka$(status_label) process $pid alive but 127.0.0.1:$KAFKA_PORT not answering (starting or stuck)"
                rc=1
            fi
        else
            say "Kafka$(status_label) not running"
            rc=1
        fi
    done
    # Never installs anything: a status query should not have side effects.
    PG_BIN="${TICKPIPE_PG_BIN:-$(find_newest_pg_bin)}"
    if [[ -n "$PG_BIN" && -f "$PG_DATA/PG_VERSION" ]] && pg_running && pg_ready; then
        say "PostgreSQL: running (127.0.0.1:$PG_PORT)"
    else
        say "PostgreSQL: not running"
        rc=1
    fi
    return "$rc"
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

main() {
    case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    env)
        load_ports lenient
        print_env
        ;;
    restart-postgres) cmd_restart_postgres ;;
    restart-kafka) cmd_restart_kafka ;;
    stop-kafka-node) cmd_stop_kafka_node TERM "${2:-}" ;;
    kill-kafka-node) cmd_stop_kafka_node KILL "${2:-}" ;;
    start-kafka-node) cmd_start_kafka_node "${2:-}" ;;
    stop-postgres) cmd_stop_postgres ;;
    start-postgres) cmd_start_postgres ;;
    status) cmd_status ;;
    versions)
        # Never installs anything, like status.
        PG_BIN="${TICKPIPE_PG_BIN:-$(find_newest_pg_bin)}"
        kafka_version_line
        pg_version_line
        ;;
    *) usage ;;
    esac
}

main "$@"
