# shellcheck shell=bash
# Sourced by scripts/services.sh, after common.sh and kafka-setup.sh. Owns the Kafka broker processes:
# starting a node (in its own session, outliving the script) and waiting until it is ready, stopping or
# killing it, the status and version lines, and the Kafka subcommands (restart-kafka, stop-, kill- and
# start-kafka-node). Every node is a broker and a KRaft controller; select_node picks the node that the
# functions here act on.

# The Kafka PID from the pid file, but only if that process still is our broker (PIDs get reused).
kafka_pid() {
    [[ -f "$KAFKA_PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$KAFKA_PID_FILE")"
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    echo "$pid"
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
    close_inherited_fds setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID_FILE" \
        "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_PROPS" </dev/null >>"$KAFKA_LOG" 2>&1 &
    echo "$log_offset"
}

launch_kafka() {
    local log_offset
    log_offset="$(launch_kafka_node)" || exit 1
    wait_for_kafka "$log_offset"
}

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

# Says whether each node runs and answers; returns 1 unless all do.
kafka_status() {
    local pid rc=0 n label
    for ((n = 1; n <= NODES; n++)); do
        select_node "$n"
        if ((NODES == 1)); then label=":"; else label=" node $n:"; fi
        if pid="$(kafka_pid)"; then
            if port_open "$KAFKA_PORT"; then
                say "Kafka$label running (pid $pid, 127.0.0.1:$KAFKA_PORT)"
            else
                say "Kafka$label process $pid alive but 127.0.0.1:$KAFKA_PORT not answering (starting or stuck)"
                rc=1
            fi
        else
            say "Kafka$label not running"
            rc=1
        fi
    done
    select_node 1
    return "$rc"
}

# ---------------------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------------------

require_kafka_data() {
    [[ -f "$KAFKA_DATA/meta.properties" ]] || die "no Kafka data in $KAFKA_DATA; run '$0 up' first"
}

# A cluster is restarted one node at a time (a rolling restart), so it stays available throughout.
cmd_restart_kafka() {
    load_ports lenient
    local n
    for ((n = 1; n <= NODES; n++)); do
        select_node "$n"
        require_kafka_data
        stop_kafka
        launch_kafka
    done
}

# One node of the cluster (or the single node as node 1), for drills: stop (SIGTERM) or kill (SIGKILL)
# it, keeping its data, and start it again.
cmd_stop_kafka_node() { # signal node
    load_ports lenient
    node_arg "${2:-}"
    require_kafka_data
    stop_kafka "$1"
}

cmd_start_kafka_node() {
    load_ports lenient
    node_arg "${1:-}"
    require_kafka_data
    local pid
    if pid="$(kafka_pid)"; then
        say "Kafka $(node_label)is already running (pid $pid)"
        return
    fi
    launch_kafka
}
