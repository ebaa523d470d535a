# shellcheck shell=bash
# Sourced by scripts/services.sh, after common.sh. Owns what a Kafka node needs before it can start:
# Java and the broker jars (fetched from Maven Central with scripts/kafka/pom.xml), the node layout in
# the state directory (select_node), the node's properties file, made from the committed ones in
# deploy/kafka/ that docker compose runs, and the KRaft storage format. The broker processes
# themselves are kafka.sh's.

# Keep in sync with <kafka.version> in scripts/kafka/pom.xml; it names the jar cache directory.
KAFKA_VERSION=4.1.1
KAFKA_POM="$REPO_ROOT/scripts/kafka/pom.xml"
KAFKA_LOG4J="$REPO_ROOT/scripts/kafka/log4j2.properties"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
# The broker properties of docker-compose.yml and docker-compose.cluster.yml, which the native nodes
# start from too (see write_kafka_properties).
KAFKA_DEPLOY_DIR="$REPO_ROOT/deploy/kafka"

# Everything Kafka keeps; with one node this is also the node's own directory (see select_node).
KAFKA_ROOT="$STATE_DIR/kafka"
# Set per node by select_node.
NODE=
KAFKA_DIR=
KAFKA_DATA=
KAFKA_PROPS=
KAFKA_PID_FILE=
KAFKA_LOG=
KAFKA_PORT=
CONTROLLER_PORT=

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
    if ! [[ "${1:-}" =~ ^[1-9]$ ]] || (($1 > NODES)); then
        die "name a node from 1 to $NODES (KAFKA_NODES=$NODES)"
    fi
    select_node "$1"
}

broker_list() {
    local n list=()
    for ((n = 1; n <= NODES; n++)); do list+=("127.0.0.1:$((BASE_PORT + 2 * (n - 1)))"); done
    (IFS=,; echo "${list[*]}")
}

node_label() { ((NODES == 1)) || echo "node $NODE "; }

# ---------------------------------------------------------------------------------------------------------
# Java and the jars
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

# ---------------------------------------------------------------------------------------------------------
# The node's properties and storage
# ---------------------------------------------------------------------------------------------------------

# The committed file node $NODE starts from: the single node of docker-compose.yml, or node N of
# docker-compose.cluster.yml (node 1's file for nodes 4..9, which compose does not have; the files differ
# only in keys that are replaced here anyway).
kafka_template() {
    if ((NODES == 1)); then
        echo "$KAFKA_DEPLOY_DIR/server.properties"
    elif [[ -f "$KAFKA_DEPLOY_DIR/cluster/node-$NODE.properties" ]]; then
        echo "$KAFKA_DEPLOY_DIR/cluster/node-$NODE.properties"
    else
        echo "$KAFKA_DEPLOY_DIR/cluster/node-1.properties"
    fi
}

# Prints properties file $1 with each `key=value` argument after it in place of that key's line, or at
# the end if the file does not set the key. Comments and every other line are kept as they are.
replace_properties() {
    local template="$1" line key kv
    shift
    local -A by_key=()
    for kv in "$@"; do by_key["${kv%%=*}"]="$kv"; done
    while IFS= read -r line || [[ -n "$line" ]]; do
        key="${line%%=*}"
        if [[ "$line" == *=* && "$line" != [#!]* && -n "${by_key[$key]+set}" ]]; then
            echo "${by_key[$key]}"
            unset "by_key[$key]"
        else
            echo "$line"
        fi
    done <"$template"
    for kv in "$@"; do
        key="${kv%%=*}"
        [[ -z "${by_key[$key]+set}" ]] || echo "$kv"
    done
}

# The node's properties are deploy/kafka's, which docker compose runs as they are, with only what must
# differ on this machine replaced: the node id, the addresses (127.0.0.1 and this state directory's ports
# instead of the compose service names) and the log dir. Everything else (replication factors, min ISR,
# partitions, rebalance delay, ...) is the compose broker's, so the tests run against the same settings.
write_kafka_properties() {
    local template listeners n voters=()
    template="$(kafka_template)"
    [[ -f "$template" ]] || die "the broker properties $template are missing"
    listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT"
    local overrides=(
        "node.id=$NODE"
        "listeners=$listeners"
        "advertised.listeners=$listeners"
        "log.dirs=$KAFKA_DATA"
    )
    if ((NODES == 1)); then
        # A dynamic quorum of this one controller, as in deploy/kafka/server.properties.
        overrides+=("controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT")
    else
        # A static voter set of every node's controller.
        for ((n = 1; n <= NODES; n++)); do voters+=("$n@127.0.0.1:$((BASE_PORT + 2 * (n - 1) + 1))"); done
        overrides+=("controller.quorum.voters=$(IFS=,; echo "${voters[*]}")")
    fi
    if secure; then
        local line
        while IFS= read -r line; do overrides+=("$line"); done < <(secure_kafka_overrides)
    fi
    {
        echo "# Written by scripts/services.sh: ${template#"$REPO_ROOT/"} with these keys replaced for a"
        echo "# broker on this machine: ${overrides[*]%%=*}"
        echo
        replace_properties "$template" "${overrides[@]}"
    } >"$KAFKA_PROPS"
    chmod 600 "$KAFKA_PROPS"
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
    # As deploy/kafka/start.sh does: --standalone goes with controller.quorum.bootstrap.servers (a
    # dynamic quorum of this one node); a static controller.quorum.voters is formatted without it.
    grep -q '^controller.quorum.voters=' "$KAFKA_PROPS" || quorum=(--standalone)
    if secure; then
        local arg
        while IFS= read -r arg; do quorum+=("$arg"); done < <(secure_scram_arguments)
    fi
    if ! kafka_java kafka.tools.StorageTool format "${quorum[@]}" -t "$id" -c "$KAFKA_PROPS" \
        >>"$KAFKA_LOG" 2>&1; then
        log_tail "$KAFKA_LOG" "$log_offset"
        die "formatting Kafka storage failed"
    fi
}
