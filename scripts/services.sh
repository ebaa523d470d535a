#!/usr/bin/env bash
# Starts and stops the real services the tests and benchmarks run against, without Docker:
#   - Apache Kafka (KRaft, one node acting as broker and controller), from Maven Central jars;
#   - a throwaway PostgreSQL cluster, from the Debian server binaries.
#
#   scripts/services.sh up                # start both (no-op if already running), print `export` lines
#   scripts/services.sh env               # print the `export` lines only:  eval "$(scripts/services.sh env)"
#   scripts/services.sh down              # stop both, delete their data (logs are kept)
#   scripts/services.sh restart-postgres  # fast stop + start on the same data and port
#   scripts/services.sh restart-kafka     # SIGTERM + start on the same log dir and port
#   scripts/services.sh stop-postgres     # fast stop (data kept); start-postgres starts it again
#   scripts/services.sh status            # say what is running (exit 1 unless both are)
#   scripts/services.sh versions          # print the Kafka and PostgreSQL versions, one per line
#
# Settings (environment):
#   TICKPIPE_KAFKA_PORT   broker port, default 9092; the controller listens on the next port
#   TICKPIPE_PG_PORT      PostgreSQL port, default 5432
#   TICKPIPE_STATE_DIR    pid files, logs and data, default ${TMPDIR:-/tmp}/tickpipe-services
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

STATE_DIR="${TICKPIPE_STATE_DIR:-${TMPDIR:-/tmp}/tickpipe-services}"
# HOME may be unset under some CI runners; fall back to the passwd entry (which is what mvn uses too).
CACHE_DIR="${TICKPIPE_CACHE_DIR:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/tickpipe}"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
TIMEOUT="${TICKPIPE_SERVICES_TIMEOUT:-120}"

LOG_DIR="$STATE_DIR/logs"
PORTS_FILE="$STATE_DIR/ports"
KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$LOG_DIR/kafka.log"
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
KAFKA_PORT=
CONTROLLER_PORT=
PG_PORT=

load_ports() {
    KAFKA_PORT="${TICKPIPE_KAFKA_PORT:-9092}"
    PG_PORT="${TICKPIPE_PG_PORT:-5432}"
    if [[ -f "$PORTS_FILE" ]]; then
        local saved_kafka saved_pg
        read -r saved_kafka saved_pg <"$PORTS_FILE"
        if [[ "$1" == strict && ("$saved_kafka" != "$KAFKA_PORT" || "$saved_pg" != "$PG_PORT") ]]; then
            die "$STATE_DIR was set up for Kafka port $saved_kafka and PostgreSQL port $saved_pg," \
                "not $KAFKA_PORT/$PG_PORT: run '$0 down' first or use another TICKPIPE_STATE_DIR"
        fi
        KAFKA_PORT="$saved_kafka"
        PG_PORT="$saved_pg"
    fi
    CONTROLLER_PORT=$((KAFKA_PORT + 1))
}

save_ports() { echo "$KAFKA_PORT $PG_PORT" >"$PORTS_FILE"; }

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

# Same GC settings as Kafka's own kafka-run-class.sh; the heap is sized for a laptop/CI box (2 cores).
KAFKA_JAVA=(java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*")

kafka_java() { "${KAFKA_JAVA[@]}" "$@"; }

write_kafka_properties() {
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
}

# A broker refuses to start on an unformatted log dir ("No readable meta.properties files found").
format_kafka_storage() {
    if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
        return
    fi
    local cluster_id log_offset
    log_offset="$(log_size "$KAFKA_LOG")"
    # Logging would share stdout with the id, so keep only the line that looks like one.
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG" |
        grep -E '^[A-Za-z0-9_-]{22}$' | tail -n 1 || true)"
    [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid printed no cluster id (see $KAFKA_LOG)"
    say "formatting Kafka storage in $KAFKA_DATA (cluster id $cluster_id)"
    log_marker "formatting Kafka storage (cluster id $cluster_id)" "$KAFKA_LOG"
    # --standalone goes with controller.quorum.bootstrap.servers (a dynamic quorum of this one node).
    if ! kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$KAFKA_PROPS" \
        >>"$KAFKA_LOG" 2>&1; then
        log_tail "$KAFKA_LOG" "$log_offset"
        die "formatting Kafka storage failed"
    fi
}

# Start the broker in its own session (setsid) with nohup, so it outlives this script and the shell that
# ran it, and is not hit by a Ctrl-C aimed at the caller. The pid is written by the process that then
# becomes java (exec), so it is the broker's own pid whatever setsid does.
launch_kafka() {
    local log_offset
    log_offset="$(log_size "$KAFKA_LOG")"
    log_marker "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT" "$KAFKA_LOG"
    say "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (controller $CONTROLLER_PORT), log $KAFKA_LOG"
    rm -f "$KAFKA_PID_FILE"
    # shellcheck disable=SC2016 # $$ and "$@" are for the inner bash
    setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID_FILE" \
        "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_PROPS" </dev/null >>"$KAFKA_LOG" 2>&1 &
    wait_for_kafka "$log_offset"
}

# Ready = this run's log says "Kafka Server started" and the broker port takes connections.
wait_for_kafka() {
    local log_offset="$1" deadline=$((SECONDS + TIMEOUT)) pid=
    while ((SECONDS < deadline)); do
        if [[ -z "$pid" && -s "$KAFKA_PID_FILE" ]]; then
            pid="$(cat "$KAFKA_PID_FILE")"
        fi
        if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
            log_tail "$KAFKA_LOG" "$log_offset"
            die "Kafka exited during startup (see above)"
        fi
        if tail -c +"$((log_offset + 1))" "$KAFKA_LOG" | grep -q 'Kafka Server started' &&
            port_open "$KAFKA_PORT"; then
            say "Kafka is ready on 127.0.0.1:$KAFKA_PORT (pid $pid)"
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
    die "Kafka did not get ready within ${TIMEOUT}s"
}

start_kafka() {
    local pid
    if pid="$(kafka_pid)"; then
        if port_open "$KAFKA_PORT"; then
            say "Kafka is already running (pid $pid, 127.0.0.1:$KAFKA_PORT)"
            return
        fi
        # Still starting (e.g. an `up` that was interrupted): the port check is what matters here.
        say "Kafka (pid $pid) is running but 127.0.0.1:$KAFKA_PORT does not answer yet; waiting"
        wait_for_kafka 0
        return
    fi
    if port_open "$KAFKA_PORT" || port_open "$CONTROLLER_PORT"; then
        die "port $KAFKA_PORT or $CONTROLLER_PORT is taken by a process this script did not start;" \
            "stop it or set TICKPIPE_KAFKA_PORT"
    fi
    ensure_java_and_maven
    ensure_kafka_libs
    mkdir -p "$KAFKA_DIR" "$KAFKA_DATA"
    write_kafka_properties
    format_kafka_storage
    launch_kafka
}

# SIGTERM lets the broker close its logs cleanly (a later start skips log recovery); SIGKILL after 30 s.
stop_kafka() {
    local pid
    if ! pid="$(kafka_pid)"; then
        rm -f "$KAFKA_PID_FILE"
        say "Kafka is not running"
        return
    fi
    say "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while pid_alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if pid_alive "$pid"; then
        say "Kafka did not stop within 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while pid_alive "$pid"; do sleep 0.1; done
    fi
    rm -f "$KAFKA_PID_FILE"
    log_marker "Kafka stopped" "$KAFKA_LOG"
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
    # shellcheck disable=SC2094 # both the server (-l) and pg_ctl's own errors append to the one log
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" >/dev/null 2>>"$PG_LOG"; then
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
    printf 'export %s=%q\n' \
        KAFKA_BROKERS "127.0.0.1:$KAFKA_PORT" \
        DATABASE_URL "postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE" \
        TICKPIPE_KAFKA_LIBS "$KAFKA_LIBS" \
        TICKPIPE_STATE_DIR "$STATE_DIR" \
        TICKPIPE_PG_BIN "$pg_bin" \
        TICKPIPE_PG_DATA "$PG_DATA"
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
    stop_kafka
    if [[ -d "$PG_DATA" ]]; then
        stop_postgres
    fi
    # Only what this script created; the logs stay for post-mortems (CI runs `down` on exit).
    rm -rf "$KAFKA_DIR" "$PG_DIR" "$PORTS_FILE"
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

cmd_restart_kafka() {
    load_ports lenient
    [[ -f "$KAFKA_DATA/meta.properties" ]] || die "no Kafka data in $KAFKA_DATA; run '$0 up' first"
    stop_kafka
    launch_kafka
}

cmd_status() {
    load_ports lenient
    local pid rc=0
    if pid="$(kafka_pid)"; then
        if port_open "$KAFKA_PORT"; then
            say "Kafka: running (pid $pid, 127.0.0.1:$KAFKA_PORT)"
        else
            say "Kafka: process $pid alive but 127.0.0.1:$KAFKA_PORT not answering (starting or stuck)"
            rc=1
        fi
    else
        say "Kafka: not running"
        rc=1
    fi
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
