# shellcheck shell=bash
# Sourced by scripts/services.sh, after common.sh. Owns the throwaway PostgreSQL cluster: finding (or
# installing) the server binaries, the OS user it runs as, initdb, starting and stopping it with pg_ctl,
# waiting until it takes password connections over TCP, the `stocks` database, the status and version
# lines, and the PostgreSQL subcommands (restart-, stop- and start-postgres).

# PostgreSQL's own directory is owned by the server's OS user (PostgreSQL refuses to run as root).
PG_DIR="$STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_SOCKET_DIR="$PG_DIR/run"
PG_LOG="$LOG_DIR/postgres.log"
PG_USER=postgres
PG_PASSWORD=postgres
PG_DATABASE=stocks
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
    if secure; then secure_postgres_config; fi
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
    if ! (close_inherited_fds as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" \
        -o "-c shared_preload_libraries=pg_stat_statements") >/dev/null 2>>"$PG_LOG"; then
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

# The binaries to report on without installing anything: a status query should not have side effects.
find_pg_bin_quietly() { PG_BIN="${TICKPIPE_PG_BIN:-$(find_newest_pg_bin)}"; }

# Says whether PostgreSQL runs and answers; returns 1 unless it does.
pg_status() {
    find_pg_bin_quietly
    if [[ -n "$PG_BIN" && -f "$PG_DATA/PG_VERSION" ]] && pg_running && pg_ready; then
        say "PostgreSQL: running (127.0.0.1:$PG_PORT)"
    else
        say "PostgreSQL: not running"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------------------

require_pg_data() {
    [[ -f "$PG_DATA/PG_VERSION" ]] || die "no PostgreSQL cluster in $PG_DATA; run '$0 up' first"
}

cmd_restart_postgres() {
    load_ports lenient
    require_pg_data
    stop_postgres
    launch_postgres
}

# Stop and start apart, for tests that watch a service answer 503 while the database is down.
cmd_stop_postgres() {
    load_ports lenient
    require_pg_data
    stop_postgres
}

cmd_start_postgres() {
    load_ports lenient
    require_pg_data
    find_pg_bin
    pg_running && { say "PostgreSQL is already running"; return; }
    launch_postgres
}
