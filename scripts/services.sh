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
#   TICKPIPE_SECURE=1 scripts/services.sh up  # the secure services: Kafka SASL_SSL (SCRAM-SHA-512),
#                         # PostgreSQL TLS only, PgBouncer in transaction mode, a test CA; own state dir
#                         # (TICKPIPE_SECURE_STATE_DIR, default /tmp/tickpipe-secure) and ports (Kafka
#                         # TICKPIPE_SECURE_KAFKA_PORT=29092, PostgreSQL TICKPIPE_SECURE_PG_PORT=25432,
#                         # PgBouncer TICKPIPE_BOUNCER_PORT=26432); `env` prints TICKPIPE_SECURE_* names
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
#
# This file is the dispatcher; the work is in scripts/services/: common.sh (settings, state directory,
# ports, helpers), kafka-setup.sh (jars, node layout, properties, storage), kafka.sh (broker processes),
# postgres.sh (the PostgreSQL cluster). The brokers' properties are deploy/kafka/'s, the ones docker
# compose runs, with only the node id, addresses and log dir replaced (kafka-setup.sh).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

# shellcheck source=scripts/services/common.sh
source "$SCRIPT_DIR/services/common.sh"
# shellcheck source=scripts/services/kafka-setup.sh
source "$SCRIPT_DIR/services/kafka-setup.sh"
# shellcheck source=scripts/services/kafka.sh
source "$SCRIPT_DIR/services/kafka.sh"
# shellcheck source=scripts/services/postgres.sh
source "$SCRIPT_DIR/services/postgres.sh"
# shellcheck source=scripts/services/secure.sh
source "$SCRIPT_DIR/services/secure.sh"

# The `export` lines, on stdout.
print_env() {
    if secure; then
        print_secure_env
        return
    fi
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

cmd_up() {
    local started=$SECONDS
    load_ports strict
    prepare_state_dir
    save_ports
    if secure; then make_certificates; fi
    start_kafka
    start_postgres
    if secure; then start_pgbouncer; fi
    say "$(kafka_version_line); $(pg_version_line)"
    say "services up in $((SECONDS - started))s (state in $STATE_DIR)"
    print_env
}

cmd_down() {
    load_ports lenient
    stop_all_kafka
    stop_pgbouncer
    if [[ -d "$PG_DATA" ]]; then
        stop_postgres
    fi
    # Only what this script created; the logs stay for post-mortems (CI runs `down` on exit). The
    # single node's `down` leaves the cluster/ subdirectory alone.
    rm -rf "$KAFKA_ROOT" "$PG_DIR" "$PORTS_FILE" "$SECURE_CERTS" "$SECURE_SECRETS" "$BOUNCER_DIR"
    say "stopped; removed the data in $STATE_DIR (logs kept in $LOG_DIR)"
}

cmd_status() {
    load_ports lenient
    local rc=0
    kafka_status || rc=1
    pg_status || rc=1
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
        find_pg_bin_quietly
        kafka_version_line
        pg_version_line
        ;;
    *) usage ;;
    esac
}

main "$@"
