# shellcheck shell=bash
# Sourced by scripts/services.sh. Owns what both services share: the node count (KAFKA_NODES), the
# state directory and its layout, the ports file, logging (say/die, log tails and markers), process
# and port probes, and installing a missing package with apt-get. Defines functions and globals
# only; starts nothing.

NODES="${KAFKA_NODES:-1}"
[[ "$NODES" =~ ^[1-9]$ && "$NODES" != 2 ]] ||
    { echo "services: ERROR: KAFKA_NODES must be 1 or 3..9 (two voters survive no failure), not '$NODES'" >&2; exit 2; }
if [[ "${TICKPIPE_SECURE:-0}" == 1 ]]; then
    ((NODES == 1)) || { echo "services: ERROR: TICKPIPE_SECURE=1 runs a single Kafka node" >&2; exit 2; }
    # The secure services (scripts/services/secure.sh) run beside the default ones, with settings
    # of their own: a shell that evaluated the default services' `env` has TICKPIPE_STATE_DIR set.
    BASE_STATE_DIR="${TICKPIPE_SECURE_STATE_DIR:-${TMPDIR:-/tmp}/tickpipe-secure}"
else
    BASE_STATE_DIR="${TICKPIPE_STATE_DIR:-${TMPDIR:-/tmp}/tickpipe-services}"
fi
if ((NODES == 1)); then
    STATE_DIR="$BASE_STATE_DIR"
else
    # A subdirectory, so that `down` of either set never touches the other's data.
    STATE_DIR="$BASE_STATE_DIR/cluster"
fi
# HOME may be unset under some CI runners; fall back to the passwd entry (which is what mvn uses too).
CACHE_DIR="${TICKPIPE_CACHE_DIR:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/tickpipe}"
TIMEOUT="${TICKPIPE_SERVICES_TIMEOUT:-120}"

LOG_DIR="$STATE_DIR/logs"
PORTS_FILE="$STATE_DIR/ports"

say() { echo "services: $*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------------------
# Ports. Once services were started from a state directory, its ports are fixed (the KRaft controller's
# address is written into the metadata log at format time, and `env` must describe what is running), so
# every subcommand reads them back from the state directory instead of trusting the current environment.
# BASE_PORT is node 1's broker port (see select_node in kafka.sh for the others).
# ---------------------------------------------------------------------------------------------------------
BASE_PORT=
PG_PORT=

load_ports() {
    if [[ "${TICKPIPE_SECURE:-0}" == 1 ]]; then
        BASE_PORT="${TICKPIPE_SECURE_KAFKA_PORT:-29092}"
        PG_PORT="${TICKPIPE_SECURE_PG_PORT:-25432}"
    elif ((NODES == 1)); then
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

prepare_state_dir() {
    mkdir -p "$STATE_DIR" "$LOG_DIR"
    # The postgres OS user has to reach its own directory and log file inside, whatever the umask.
    chmod 755 "$STATE_DIR" "$LOG_DIR"
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

# Runs "$@" with every file descriptor above 2 closed. Call it in a subshell that starts a daemon:
# a server started from here must not keep the caller's descriptors open for its whole life (a lock
# that `flock` holds around a test run, say, would stay held until the server stops, and every
# other process waiting for that lock with it).
close_inherited_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
            eval "exec $fd>&-" 2>/dev/null || true
        fi
    done
    "$@"
}
