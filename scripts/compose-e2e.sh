#!/usr/bin/env bash
# End-to-end check of the compose file: lint the Dockerfile, build the three images, start
# kafka + postgres + generator + aggregator + api + prometheus, and wait until GET /v1/get-prices on
# :8080 returns an average for every ticker the generator sends (AMZN, MSFT, AAPL), and until
# Prometheus on :9090 has every service's target up (every replica: two aggregators in the cluster
# variant) and every alert of deploy/prometheus/rules/tickpipe.yml loaded. Then the same for the
# cluster variant (docker-compose.yml + docker-compose.cluster.yml: three Kafka nodes, replication
# factor 3, two aggregators), which additionally stops the Kafka node that leads the most partitions
# of "stocks" and waits until every ticker has a price from a window that began after the stop.
# Then the secure variant (docker-compose.secure.yml: Kafka over SASL_SSL, PostgreSQL over TLS only,
# with test certificates made by scripts/test-certs.sh), which additionally checks the TLS connections.
# Whatever happens, the stack's state and logs are printed and the stack is removed (with its
# volumes) on exit; each variant's stack is removed before the next one starts.
#
#   scripts/compose-e2e.sh
#   E2E_VARIANTS=cluster scripts/compose-e2e.sh     # only the cluster variant
#   E2E_VARIANTS=secure scripts/compose-e2e.sh      # docker-compose.secure.yml: Kafka over SASL_SSL,
#                                                   # PostgreSQL over TLS only (test certificates)
#
# Without a usable Docker engine it sets up the podman-based container lab that lives beside the
# repository (${TICKPIPE_SHARED_DIR:-<repo>/../shared}/container-lab); that needs root.
#
# Environment (all optional):
#   TICKPIPE_SHARED_DIR   folder holding container-lab        (default: <repo root>/../shared)
#   COMPOSE_PROJECT_NAME  compose project of the test stack   (default: tickpipe-e2e; the cluster
#                         and secure variants append -cluster and -secure)
#   E2E_VARIANTS          which stacks to check, in order      (default: "default cluster secure")
#   E2E_WAIT_TIMEOUT      seconds for `up --wait` to see every service healthy (default: 900)
#   E2E_PRICES_TIMEOUT    seconds, after `up` returns, for all three averages  (default: 240)
#   E2E_FAILOVER_TIMEOUT  seconds, after a Kafka node is stopped, for prices of a window that began
#                         after the stop (default: 240)
#   E2E_PROMETHEUS_TIMEOUT seconds, after prices appear, for every Prometheus target to be up
#                         (default: 120)
#   COMPOSE_FILE          honoured by every `docker compose` call, e.g. to add a local override (the
#                         cluster variant adds docker-compose.cluster.yml to it)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
LAB=${TICKPIPE_SHARED_DIR:-$ROOT/../shared}/container-lab
# A project name of its own, so the test never touches a stack someone runs with the default name
# (the published port 8080 must still be free).
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-tickpipe-e2e}
BASE_PROJECT=$COMPOSE_PROJECT_NAME
BASE_COMPOSE_FILE=${COMPOSE_FILE:-docker-compose.yml}
read -r -a VARIANTS <<<"${E2E_VARIANTS:-default cluster secure}"
WAIT_TIMEOUT=${E2E_WAIT_TIMEOUT:-900}
PRICES_TIMEOUT=${E2E_PRICES_TIMEOUT:-240}
FAILOVER_TIMEOUT=${E2E_FAILOVER_TIMEOUT:-240}
PROMETHEUS_TIMEOUT=${E2E_PROMETHEUS_TIMEOUT:-120}
API_URL=http://localhost:8080
PROMETHEUS_URL=http://127.0.0.1:9090
TICKERS=(AMZN MSFT AAPL)
SERVICES=(kafka postgres generator aggregator api prometheus)   # of the variant being checked (use_variant)
KAFKA_NODES=(kafka)                                  # Kafka services, node N at index N-1
AGGREGATORS=1                                        # aggregator replicas: Prometheus targets
VARIANT=""

STACK_CREATED=0   # set once `up` may have created something that `down` must remove
PHASES=()         # "name<TAB>seconds", printed on exit, also after a failure
PHASE=""          # the phase running now: on_exit reports it as failed with its time so far
PHASE_START=0
UP_PID=""         # the `docker compose up` running in the background, if any
MAX_RESTARTS=5    # a container restarted this often during `up` is crash-looping

log() { printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# timed NAME COMMAND...: runs COMMAND in this shell (so `source` and exports stick) and records
# how long it took under NAME.
timed() {
    PHASE=$1 PHASE_START=$SECONDS
    shift
    "$@"
    PHASES+=("$PHASE"$'\t'"$((SECONDS - PHASE_START))")
    PHASE=""
}

print_timings() {
    local phase
    [[ -z $PHASE ]] || PHASES+=("$PHASE (failed)"$'\t'"$((SECONDS - PHASE_START))")
    ((${#PHASES[@]})) || return 0
    log "phase timings"
    for phase in "${PHASES[@]}"; do
        printf '  %-30s %4d s\n' "${phase%%$'\t'*}" "${phase##*$'\t'}"
    done
}

# Logs on exit, per service so that one chatty service cannot hide the others' last words:
# about 80 lines in all after a success (16 each), 80 lines of each service after a failure.
# The whole log is cut with `tail` rather than `logs --tail`: podman's --tail only sees the
# latest run of a container that keeps restarting, i.e. not the error that made it restart.
print_logs() {
    local rc=$1 lines=16 service
    ((rc == 0)) || lines=80
    for service in "${SERVICES[@]}"; do
        log "docker compose logs $service (last $lines lines)"
        docker compose logs --no-color --timestamps "$service" 2>&1 | tail -n "$lines"
    done
}

on_exit() {
    local rc=$?
    trap - EXIT
    set +e   # cleanup must run to the end even when one of its commands fails
    if [[ -n $UP_PID ]]; then   # interrupted during `up`: stop it before `down` races it
        kill "$UP_PID" 2>/dev/null
        wait "$UP_PID" 2>/dev/null
    fi
    if ((STACK_CREATED)); then
        log "docker compose ps"
        docker compose ps --all
        print_logs "$rc"
        log "docker compose down -v -t 10"
        docker compose down -v -t 10 --remove-orphans
    fi
    print_timings
    if ((rc == 0)); then log "compose e2e: PASSED"; else log "compose e2e: FAILED (exit $rc)"; fi
    exit "$rc"
}

# Uses a Docker engine if one answers; otherwise sets up the container lab (idempotent, a few
# seconds when already done) and points docker at it.
ensure_engine() {
    if docker info >/dev/null 2>&1; then
        echo "docker engine reachable (DOCKER_HOST=${DOCKER_HOST:-default}); not using the container lab"
        return
    fi
    [[ -x $LAB/setup && -r $LAB/env ]] \
        || die "no usable docker engine and no container lab at $LAB (set TICKPIPE_SHARED_DIR)"
    log "no usable docker engine: setting up the container lab ($LAB)"
    # Services find each other by name (kafka, postgres). Podman 4.3's CNI networks only resolve
    # container names with the dnsname plugin, which the lab does not install; networks created
    # after it is installed get name resolution.
    if [[ ! -x /usr/lib/cni/dnsname ]]; then
        log "installing the CNI dnsname plugin (container name resolution for podman 4.3)"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-github-containernetworking-plugin-dnsname
    fi
    # Every compose file of every variant, so the lab stands in for every image any of them uses.
    "$LAB/setup" docker-compose.yml docker-compose.cluster.yml docker-compose.secure.yml Dockerfile
    # shellcheck source=/dev/null
    source "$LAB/env"
    docker info >/dev/null 2>&1 || die "docker info still fails after the container lab setup"
}

# The classic builder (the lab has no BuildKit) builds compose services in parallel without
# sharing the common `build` stage: three release builds of the whole workspace at once on two
# cores. One at a time, the second and third targets reuse the first one's cached build stage.
serialize_classic_builds() {
    if [[ ${DOCKER_BUILDKIT:-1} == 0 && -z ${COMPOSE_PARALLEL_LIMIT:-} ]]; then
        export COMPOSE_PARALLEL_LIMIT=1
        echo "classic builder: COMPOSE_PARALLEL_LIMIT=1 (build the images one after the other)"
    fi
}

lint() {
    command -v hadolint >/dev/null || die "hadolint is not on PATH (the container lab's env provides it)"
    log "hadolint Dockerfile"
    hadolint Dockerfile
    echo "hadolint: no findings"
    local variant
    for variant in "${VARIANTS[@]}"; do
        use_variant "$variant"
        log "docker compose config -q ($COMPOSE_FILE)"
        docker compose config -q
        echo "compose files are valid"
    done
}

# Points every later `docker compose` call at one variant's files and project.
use_variant() {
    VARIANT=$1
    case $VARIANT in
    default)
        export COMPOSE_FILE=$BASE_COMPOSE_FILE COMPOSE_PROJECT_NAME=$BASE_PROJECT
        SERVICES=(kafka postgres generator aggregator api prometheus)
        KAFKA_NODES=(kafka)
        AGGREGATORS=1
        ;;
    cluster)
        export COMPOSE_FILE=$BASE_COMPOSE_FILE:docker-compose.cluster.yml COMPOSE_PROJECT_NAME=$BASE_PROJECT-cluster
        SERVICES=(kafka kafka-2 kafka-3 postgres generator aggregator api prometheus)
        KAFKA_NODES=(kafka kafka-2 kafka-3)
        AGGREGATORS=2
        ;;
    secure)
        export COMPOSE_FILE=$BASE_COMPOSE_FILE:docker-compose.secure.yml COMPOSE_PROJECT_NAME=$BASE_PROJECT-secure
        SERVICES=(kafka postgres generator aggregator api prometheus)
        KAFKA_NODES=(kafka)
        AGGREGATORS=1
        ;;
    *) die "unknown variant '$VARIANT' in E2E_VARIANTS (default, cluster, secure)" ;;
    esac
}

# A leftover of an interrupted run (containers, or the pg-data volume that would skip the
# PostgreSQL init scripts) is removed first; a foreign listener on 8080 or 9090 would answer our
# curls.
prepare() {
    docker compose down -v -t 10 --remove-orphans >/dev/null 2>&1 || true
    local port
    for port in 8080 9090; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "something already listens on localhost:$port; stop it first (the stack publishes 8080 and 9090)"
        fi
    done
}

# Prints "container (restarted N times)" and succeeds if a container of the project has been
# restarted MAX_RESTARTS times or more.
crash_looping_container() {
    local id name count
    for id in $(docker compose ps --all --quiet 2>/dev/null); do
        read -r name count < <(docker inspect --format '{{.Name}} {{.RestartCount}}' "$id" 2>/dev/null) \
            || continue
        if ((count >= MAX_RESTARTS)); then
            echo "${name#/} (restarted $count times)"
            return 0
        fi
    done
    return 1
}

# `up --wait` alone would sit out the whole wait timeout while a service crash-loops under
# `restart: unless-stopped`, so it runs in the background and restart counts are watched.
start_stack() {
    log "docker compose up --build --wait --wait-timeout $WAIT_TIMEOUT (project $COMPOSE_PROJECT_NAME)"
    STACK_CREATED=1
    docker compose up --build --wait --wait-timeout "$WAIT_TIMEOUT" &
    UP_PID=$!
    local looping rc=0
    while kill -0 "$UP_PID" 2>/dev/null; do
        if looping=$(crash_looping_container); then
            die "$looping while waiting for the stack to be healthy (its log is printed below)"
        fi
        sleep 5
    done
    wait "$UP_PID" || rc=$?
    UP_PID=""
    ((rc == 0)) || die "docker compose up failed (exit $rc)"
}

# Reads a /v1/get-prices answer on stdin; exits 0 when every ticker given as an argument has a
# finite numeric averagePrice, else prints what is missing and exits 1.
PRICES_CHECK=$(
    cat <<'PY'
import json, math, sys
try:
    prices = json.load(sys.stdin)["prices"]
except (ValueError, KeyError, TypeError) as error:
    print(f"not a prices page: {error}")
    sys.exit(1)
averages = {p.get("ticker"): p.get("averagePrice") for p in prices if isinstance(p, dict)}
missing = [t for t in sys.argv[1:]
           if not isinstance(averages.get(t), (int, float)) or not math.isfinite(averages[t])]
if missing:
    print(f"no average yet for {', '.join(missing)}")
    sys.exit(1)
print("  ".join(f"{t}={averages[t]:.2f}" for t in sys.argv[1:]))
PY
)

wait_for_prices() {
    log "polling $API_URL/v1/get-prices until ${TICKERS[*]} have averages (up to $PRICES_TIMEOUT s)"
    local deadline=$((SECONDS + PRICES_TIMEOUT)) body status
    while :; do
        if body=$(curl -fsS --max-time 5 "$API_URL/v1/get-prices" 2>&1); then
            if status=$(python3 -c "$PRICES_CHECK" "${TICKERS[@]}" <<<"$body"); then
                echo "averages: $status"
                break
            fi
        else
            status="request failed: $body"
        fi
        if ((SECONDS >= deadline)); then
            printf 'last answer: %s\n' "$body"
            die "no averages for all of ${TICKERS[*]} within $PRICES_TIMEOUT s ($status)"
        fi
        echo "  $((deadline - SECONDS)) s left: $status"
        sleep 5
    done
    log "final /v1/get-prices JSON"
    python3 -m json.tool <<<"$body"
}

# Every service must be running and healthy (they all have health checks), so a crash-looping
# service hidden by `restart: unless-stopped` does not pass.
check_services() {
    log "service states (docker compose ps --format json)"
    docker compose ps --all --format json | python3 -c '
import json, sys
text = sys.stdin.read().strip()
# compose v2 prints one JSON object per line; older releases printed one JSON array.
rows = json.loads(text) if text.startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
bad = []
for service in sys.argv[1:]:
    # Every container of the service (the cluster variant runs two aggregators).
    found = [r for r in rows if r.get("Service") == service] or [{"Name": "", "State": "absent", "Health": ""}]
    for row in found:
        state, health, name = row.get("State"), row.get("Health"), row.get("Name") or ""
        print(f"  {service:<11} state={state:<8} health={health:<8} {name}")
        if state != "running" or health != "healthy":
            bad.append(row.get("Name") or service)
if bad:
    sys.exit("not running and healthy: " + ", ".join(bad))
' "${SERVICES[@]}"
}

check_endpoints() {
    # The API's metrics are on METRICS_ADDR (published on the host's loopback as 9103), not on the
    # API port, where /metrics is a 404. The dashboard at / is served from the image's web build.
    log "GET /readyz, the dashboard at /, API metrics on :9103, no /metrics on the API port"
    local url expected code
    for url in "$API_URL/readyz=200" "$API_URL/=200" "http://127.0.0.1:9103/metrics=200" "$API_URL/metrics=404"; do
        expected=${url##*=} url=${url%=*}
        code=$(curl -sS -o /dev/null --max-time 5 -w '%{http_code}' "$url") || code=000
        echo "  $url -> $code"
        [[ $code == "$expected" ]] || die "$url answered $code, expected $expected"
    done
}

# Reads Prometheus's /api/v1/targets on stdin; exits 0 when every active target is "up" and the
# jobs given as job=count arguments have that many targets each, else prints what is wrong.
TARGETS_CHECK=$(
    cat <<'PY'
import collections, json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
jobs = collections.Counter(t["labels"]["job"] for t in targets)
problems = [f'{t["labels"]["job"]} {t["scrapeUrl"]} is {t["health"]} ({t.get("lastError") or "not scraped yet"})'
            for t in targets if t["health"] != "up"]
for expected in sys.argv[1:]:
    job, count = expected.split("=")
    if jobs[job] != int(count):
        problems.append(f"{jobs[job]} {job} target(s), expected {count}")
print("; ".join(problems) or "  ".join(f"{t['labels']['job']}={t['scrapeUrl']}" for t in targets))
sys.exit(1 if problems else 0)
PY
)

# Reads Prometheus's /api/v1/rules on stdin; exits 0 when the group "tickpipe" holds every alert
# named as an argument and none of its rules failed to evaluate.
RULES_CHECK=$(
    cat <<'PY'
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups if g["name"] == "tickpipe" for r in g["rules"]]
loaded = {r["name"] for r in rules if r["type"] == "alerting"}
missing = [a for a in sys.argv[1:] if a not in loaded]
broken = [f'{r["name"]}: {r.get("lastError")}' for r in rules if r.get("health") == "err"]
if missing or broken:
    print("missing: " + ", ".join(missing) + "  failing: " + "; ".join(broken))
    sys.exit(1)
print(f"{len(loaded)} alerts loaded in group tickpipe: " + ", ".join(sorted(loaded)))
PY
)

# Prometheus on :9090: every target of every service up (each aggregator replica is a target of
# its own), then every alert of the rules file loaded and none failing to evaluate.
check_prometheus() {
    log "Prometheus $PROMETHEUS_URL: every target up (up to $PROMETHEUS_TIMEOUT s), every alert loaded"
    local deadline=$((SECONDS + PROMETHEUS_TIMEOUT)) body status alerts
    while :; do
        if body=$(curl -fsS --max-time 5 "$PROMETHEUS_URL/api/v1/targets" 2>&1); then
            status=$(python3 -c "$TARGETS_CHECK" generator=1 "aggregator=$AGGREGATORS" api=1 <<<"$body") && break
        else
            status="request failed: $body"
        fi
        ((SECONDS < deadline)) || die "Prometheus targets not all up within $PROMETHEUS_TIMEOUT s: $status"
        echo "  $((deadline - SECONDS)) s left: $status"
        sleep 5
    done
    echo "targets up: $status"
    mapfile -t alerts < <(sed -n 's/^ *- alert: *//p' deploy/prometheus/rules/tickpipe.yml)
    ((${#alerts[@]})) || die "no alerts found in deploy/prometheus/rules/tickpipe.yml"
    body=$(curl -fsS --max-time 5 "$PROMETHEUS_URL/api/v1/rules") || die "GET /api/v1/rules failed"
    python3 -c "$RULES_CHECK" "${alerts[@]}" <<<"$body" || die "the alert rules are not all loaded"
}

main() {
    cd "$ROOT"
    trap on_exit EXIT
    # Signals end the script through on_exit too, so an interrupted run still cleans up.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    command -v python3 >/dev/null || die "python3 is needed to read JSON"
    command -v curl >/dev/null || die "curl is needed"

    timed "lab setup" ensure_engine
    serialize_classic_builds
    timed "lint" lint
    local variant
    for variant in "${VARIANTS[@]}"; do
        check_variant "$variant"
    done
}

# The partition leaders of "stocks" as Kafka describes them, asked through a running node.
describe_stocks() { # service
    docker compose exec -T "$1" /opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 \
        --describe --topic stocks 2>/dev/null | grep 'Topic:'
}

# Prints "<ticker> <window start>" per ticker of the latest prices, or fails.
LATEST_WINDOWS=$(
    cat <<'PY'
import json, sys
for p in json.load(sys.stdin)["prices"]:
    print(p["ticker"], p["windowStart"])
PY
)

# Succeeds when every ticker given after the cut-off (RFC 3339) has a latest window that starts at
# or after it: all of that window's prices were produced after the cut-off.
WINDOWS_AFTER=$(
    cat <<'PY'
import json, sys
from datetime import datetime
cutoff = datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00"))
latest = {p["ticker"]: p["windowStart"] for p in json.load(sys.stdin)["prices"]}
waiting = [t for t in sys.argv[2:]
           if t not in latest or datetime.fromisoformat(latest[t].replace("Z", "+00:00")) < cutoff]
print("  ".join(f"{t}={latest.get(t, '-')}" for t in sys.argv[2:]))
sys.exit(1 if waiting else 0)
PY
)

# The cluster variant's extra check: stop the node that leads the most partitions of "stocks" (the
# node's graceful stop, as `docker compose stop` does it) and wait until every ticker has a price of
# a window that began after the stop, i.e. the generator kept writing, with two replicas, and the
# aggregators kept reading and writing.
kafka_failover() {
    log "partition leaders of stocks"
    local description victim stopped_at deadline body status node survivor=""
    description=$(describe_stocks kafka) || die "could not describe the topic stocks"
    echo "$description"
    victim=$(awk '/Partition:/ { for (i = 1; i < NF; i++) if ($i == "Leader:") n[$(i + 1)]++ }
        END { best = 0; for (id in n) if (n[id] > best || (n[id] == best && id + 0 < pick + 0)) { best = n[id]; pick = id }; print pick }' \
        <<<"$description")
    [[ $victim =~ ^[1-3]$ ]] || die "no partition leader found in the description above"
    node=${KAFKA_NODES[victim - 1]}
    for survivor in "${KAFKA_NODES[@]}"; do [[ $survivor == "$node" ]] || break; done
    body=$(curl -fsS --max-time 5 "$API_URL/v1/get-prices") || die "the API did not answer"
    echo "latest windows before the stop:"
    python3 -c "$LATEST_WINDOWS" <<<"$body" | sed 's/^/  /'
    stopped_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    log "docker compose stop -t 10 $node (Kafka node $victim, leads the most partitions) at $stopped_at"
    docker compose stop -t 10 "$node"
    log "polling $API_URL/v1/get-prices until every ticker has a window that began after $stopped_at (up to $FAILOVER_TIMEOUT s)"
    deadline=$((SECONDS + FAILOVER_TIMEOUT))
    while :; do
        if body=$(curl -fsS --max-time 5 "$API_URL/v1/get-prices" 2>&1); then
            if status=$(python3 -c "$WINDOWS_AFTER" "$stopped_at" "${TICKERS[@]}" <<<"$body"); then
                echo "prices still advancing with $node stopped: $status"
                break
            fi
        else
            status="request failed: $body"
        fi
        if ((SECONDS >= deadline)); then
            die "no window that began after the stop for every ticker within $FAILOVER_TIMEOUT s ($status)"
        fi
        echo "  $((deadline - SECONDS)) s left: $status"
        sleep 5
    done
    log "partition leaders of stocks with $node stopped (asked through $survivor)"
    describe_stocks "$survivor" || echo "(could not describe the topic)"
}

# The secure variant's extra check: the aggregator and the API say they reached PostgreSQL over TLS,
# and PostgreSQL refuses a plaintext TCP connection while it takes a verified TLS one. (Kafka's
# SASL_SSL needs no check of its own: its plaintext listener is bound to the container's loopback,
# so the prices above came over SASL_SSL.)
check_tls() {
    log "PostgreSQL over TLS only"
    local service logs refusal
    for service in aggregator api; do
        # Read whole before grep: grep -m1 ending the pipe early would fail it under pipefail.
        logs=$(docker compose logs --no-color "$service" 2>&1)
        grep -m1 'connected to PostgreSQL over TLS' <<<"$logs" \
            || die "$service did not log a TLS connection to PostgreSQL"
    done
    docker compose exec -T postgres psql -Atc 'SELECT 1' \
        "host=localhost dbname=stocks user=postgres sslmode=verify-full sslrootcert=/etc/tickpipe/secure/certs/ca.pem password=${POSTGRES_PASSWORD:-postgres}" \
        || die "a verified TLS connection to PostgreSQL failed"
    if refusal=$(docker compose exec -T postgres psql -Atc 'SELECT 1' \
        "host=localhost dbname=stocks user=postgres sslmode=disable password=${POSTGRES_PASSWORD:-postgres}" 2>&1); then
        die "PostgreSQL accepted a plaintext TCP connection"
    fi
    grep -q 'no encryption' <<<"$refusal" || die "unexpected refusal of a plaintext connection: $refusal"
    echo "plaintext refused: $refusal"
}

# One variant from start to removal. A failure exits through on_exit, which removes the stack.
check_variant() {
    use_variant "$1"
    log "variant $VARIANT: COMPOSE_FILE=$COMPOSE_FILE, project $COMPOSE_PROJECT_NAME"
    prepare
    if [[ $VARIANT == secure ]]; then
        scripts/test-certs.sh deploy/secure/certs kafka postgres localhost
    fi
    timed "$VARIANT: build + up (healthy)" start_stack
    timed "$VARIANT: until prices appear" wait_for_prices
    check_services
    check_endpoints
    timed "$VARIANT: Prometheus targets up" check_prometheus
    if [[ $VARIANT == cluster ]]; then
        timed "$VARIANT: Kafka node stopped" kafka_failover
    fi
    if [[ $VARIANT == secure ]]; then
        check_tls
    fi
    log "docker compose down -v -t 10 ($VARIANT)"
    docker compose down -v -t 10 --remove-orphans
    STACK_CREATED=0
}

main "$@"
