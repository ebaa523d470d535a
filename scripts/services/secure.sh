# shellcheck shell=bash
# Sourced by scripts/services.sh, after common.sh. The secure mode (TICKPIPE_SECURE=1): the same
# single Kafka node and PostgreSQL, set up the way managed services are, so that tickpipe's TLS,
# SASL and pooler support is tested against real servers:
#   - a test CA and a server certificate for "localhost" only (no IP address: connecting to
#     127.0.0.1 is the host name mismatch), plus a second CA that signed nothing (the "unknown CA"),
#     made with openssl in $STATE_DIR/certs on the first `up` and never committed;
#   - Kafka's one client listener is SASL_SSL with SCRAM-SHA-512 users: `tickpipe` (a super user),
#     `limited` (no ACL at all: may neither create nor read a topic) and `admin` (between brokers);
#     the controller listener stays on PLAINTEXT, on loopback;
#   - PostgreSQL with ssl=on whose pg_hba.conf accepts TCP only over TLS (hostssl);
#   - PgBouncer (Debian's, installed if missing) in transaction mode in front of it, itself speaking
#     TLS to clients and verify-full to PostgreSQL.
# Passwords are random per state directory, in $STATE_DIR/secrets (mode 600), read by the tests
# through the `<VAR>_FILE` convention. Defines functions and globals only; starts nothing by itself.

SECURE="${TICKPIPE_SECURE:-0}"
SECURE_CERTS="$STATE_DIR/certs"
SECURE_SECRETS="$STATE_DIR/secrets"
BOUNCER_DIR="$STATE_DIR/pgbouncer"
BOUNCER_LOG="$LOG_DIR/pgbouncer.log"
BOUNCER_PORT="${TICKPIPE_BOUNCER_PORT:-26432}"

secure() { [[ "$SECURE" == 1 ]]; }

# A password made once per state directory.
secret_file() {
    local file="$SECURE_SECRETS/$1"
    if [[ ! -s "$file" ]]; then
        mkdir -p "$SECURE_SECRETS"
        chmod 700 "$SECURE_SECRETS"
        (umask 077 && openssl rand -hex 16 >"$file")
    fi
    echo "$file"
}

secret() { cat "$(secret_file "$1")"; }

# The CA, the server certificate (SAN DNS:localhost only) and an unrelated CA; test-certs.sh keeps
# a set that is valid for another day and makes one otherwise.
make_certificates() {
    command -v openssl >/dev/null || { need_root_to_install openssl openssl && apt_install openssl; }
    say "test CA and a certificate for localhost in $SECURE_CERTS"
    "$REPO_ROOT/scripts/test-certs.sh" "$SECURE_CERTS" localhost
}

# The broker properties that replace the PLAINTEXT listener by SASL_SSL (write_kafka_properties).
secure_kafka_overrides() {
    local c="$SECURE_CERTS"
    printf '%s\n' \
        "listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT" \
        "advertised.listeners=SASL_SSL://localhost:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT" \
        "inter.broker.listener.name=SASL_SSL" \
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL" \
        "sasl.enabled.mechanisms=SCRAM-SHA-512" \
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512" \
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$(secret kafka-admin-password)\";" \
        "ssl.keystore.type=PEM" \
        "ssl.keystore.location=$c/kafka-keystore.pem" \
        "ssl.truststore.type=PEM" \
        "ssl.truststore.location=$c/ca.pem" \
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" \
        "super.users=User:ANONYMOUS;User:admin;User:tickpipe" \
        "allow.everyone.if.no.acl.found=false"
}

# The SCRAM users, written into the metadata log when the storage is formatted.
secure_scram_arguments() {
    local user
    for user in admin tickpipe limited; do
        printf '%s\n' --add-scram "SCRAM-SHA-512=[name=$user,password=$(secret "kafka-$user-password")]"
    done
}

# PostgreSQL: TLS on, and TCP connections only over TLS.
secure_postgres_config() {
    cp "$SECURE_CERTS/server.pem" "$SECURE_CERTS/server.key" "$PG_DATA/"
    [[ $EUID -ne 0 ]] || chown "$PG_USER:" "$PG_DATA/server.pem" "$PG_DATA/server.key"
    chmod 600 "$PG_DATA/server.key"
    printf '%s\n' "ssl = on" "ssl_cert_file = 'server.pem'" "ssl_key_file = 'server.key'" \
        >>"$PG_DATA/postgresql.conf"
    printf '%s\n' "local all all peer" "hostssl all all 127.0.0.1/32 scram-sha-256" \
        >"$PG_DATA/pg_hba.conf"
}

bouncer_pid() {
    local pid
    pid="$(cat "$BOUNCER_DIR/pgbouncer.pid" 2>/dev/null)" || return 1
    pid_alive "$pid" && echo "$pid"
}

start_pgbouncer() {
    if bouncer_pid >/dev/null; then
        say "PgBouncer is already running (127.0.0.1:$BOUNCER_PORT)"
        return
    fi
    if ! command -v pgbouncer >/dev/null; then
        need_root_to_install pgbouncer pgbouncer
        apt_install pgbouncer
    fi
    mkdir -p "$BOUNCER_DIR"
    local c="$SECURE_CERTS"
    cp "$c/server.pem" "$c/server.key" "$c/ca.pem" "$BOUNCER_DIR/"
    printf '"%s" "%s"\n' "$PG_USER" "$PG_PASSWORD" >"$BOUNCER_DIR/userlist.txt"
    cat >"$BOUNCER_DIR/pgbouncer.ini" <<EOF
; Written by scripts/services.sh (TICKPIPE_SECURE=1): transaction pooling, as Neon's and
; Supabase's pooled endpoints do, TLS on both sides.
[databases]
* = host=localhost port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
pidfile = $BOUNCER_DIR/pgbouncer.pid
logfile = $BOUNCER_LOG
auth_type = scram-sha-256
auth_file = $BOUNCER_DIR/userlist.txt
pool_mode = transaction
max_client_conn = 400
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = require
client_tls_cert_file = $BOUNCER_DIR/server.pem
client_tls_key_file = $BOUNCER_DIR/server.key
server_tls_sslmode = verify-full
server_tls_ca_file = $BOUNCER_DIR/ca.pem
EOF
    chmod 600 "$BOUNCER_DIR/server.key" "$BOUNCER_DIR/userlist.txt"
    [[ $EUID -ne 0 ]] || chown -R "$PG_USER:" "$BOUNCER_DIR"
    touch "$BOUNCER_LOG"
    [[ $EUID -ne 0 ]] || chown "$PG_USER:" "$BOUNCER_LOG"
    say "starting PgBouncer (transaction mode) on 127.0.0.1:$BOUNCER_PORT, log $BOUNCER_LOG"
    (close_inherited_fds as_pg pgbouncer -d "$BOUNCER_DIR/pgbouncer.ini") >>"$BOUNCER_LOG" 2>&1 ||
        die "PgBouncer did not start (see $BOUNCER_LOG)"
    local deadline=$((SECONDS + 20))
    until port_open "$BOUNCER_PORT"; do
        ((SECONDS < deadline)) || die "PgBouncer does not listen on $BOUNCER_PORT (see $BOUNCER_LOG)"
        sleep 0.2
    done
}

stop_pgbouncer() {
    local pid
    pid="$(bouncer_pid)" || return 0
    say "stopping PgBouncer (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do sleep 0.1; done
}

# The secure mode's `export` lines: its own names, so that they never replace the default
# services' in a shell that evaluated both.
print_secure_env() {
    local c="$SECURE_CERTS" tls="sslmode=verify-full&sslrootcert=$SECURE_CERTS/ca.pem"
    printf 'export %s=%q\n' \
        TICKPIPE_SECURE_STATE_DIR "$STATE_DIR" \
        TICKPIPE_SECURE_KAFKA_BROKERS "localhost:$BASE_PORT" \
        TICKPIPE_SECURE_KAFKA_PORT "$BASE_PORT" \
        TICKPIPE_SECURE_CA "$c/ca.pem" \
        TICKPIPE_SECURE_OTHER_CA "$c/other-ca.pem" \
        TICKPIPE_SECURE_KAFKA_PASSWORD_FILE "$(secret_file kafka-tickpipe-password)" \
        TICKPIPE_SECURE_KAFKA_LIMITED_PASSWORD_FILE "$(secret_file kafka-limited-password)" \
        TICKPIPE_SECURE_PG_PORT "$PG_PORT" \
        TICKPIPE_SECURE_BOUNCER_PORT "$BOUNCER_PORT" \
        TICKPIPE_SECURE_DATABASE_URL \
        "postgres://$PG_USER:$PG_PASSWORD@localhost:$PG_PORT/$PG_DATABASE?$tls" \
        TICKPIPE_SECURE_POOLED_URL \
        "postgres://$PG_USER:$PG_PASSWORD@localhost:$BOUNCER_PORT/$PG_DATABASE?$tls"
}
