#!/usr/bin/env bash
# End-to-end check of the compose file: lint the Dockerfile, build the three images, start
# kafka + postgres + generator + aggregator + api, and wait until GET /v1/get-prices on :8080
# returns an average for every ticker the generator sends (AMZN, MSFT, AAPL). Whatever happens,
# the stack's state and logs are printed and the stack is removed (with its volumes) on exit.
#
#   scripts/compose-e2e.sh
#
# Without a usable Docker engine it sets up the podman-based container lab that lives beside the
# repository (${TICKPIPE_SHARED_DIR:-<repo>/../shared}/container-lab); that needs root.
#
# Environment (all optional):
#   TICKPIPE_SHARED_DIR   folder holding container-lab        (default: <repo root>/../shared)
#   COMPOSE_PROJECT_NAME  compose project of the test stack   (default: tickpipe-e2e)
#   E2E_WAIT_TIMEOUT      seconds for `up --wait` to see every service healthy (default: 900)
#   E2E_PRICES_TIMEOUT    seconds, after `up` returns, for all three averages  (default: 240)
#   COMPOSE_FILE          honoured by every `docker compose` call, e.g. to add a local override
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
LAB=${TICKPIPE_SHARED_DIR:-$ROOT/../shared}/container-lab
# A project name of its own, so the test never touches a stack someone runs with the default name
# (the published port 8080 must still be free).
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-tickpipe-e2e}
WAIT_TIMEOUT=${E2E_WAIT_TIMEOUT:-900}
PRICES_TIMEOUT=${E2E_PRICES_TIMEOUT:-240}
API_URL=http://localhost:8080
TICKERS=(AMZN MSFT AAPL)
SERVICES=(kafka postgres generator aggregator api)

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
    "$LAB/setup" docker-compose.yml Dockerfile
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
    log "docker compose config -q"
    docker compose config -q
    echo "compose file is valid"
}

# A leftover of an interrupted run (containers, or the pg-data volume that would skip the
# PostgreSQL init scripts) is removed first; a foreign listener on 8080 would answer our curls.
prepare() {
    docker compose down -v -t 10 --remove-orphans >/dev/null 2>&1 || true
    if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
        die "something already listens on localhost:8080; stop it first (the api publishes 8080)"
    fi
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
by_service = {r["Service"]: r for r in rows}
bad = []
for service in sys.argv[1:]:
    row = by_service.get(service)
    state, health = (row.get("State"), row.get("Health")) if row else ("absent", "")
    print(f"  {service:<11} state={state:<8} health={health}")
    if state != "running" or health != "healthy":
        bad.append(service)
if bad:
    sys.exit("not running and healthy: " + ", ".join(bad))
' "${SERVICES[@]}"
}

check_endpoints() {
    # The API's metrics are on METRICS_ADDR (published on the host's loopback as 9103), not on the
    # API port, where /metrics is a 404.
    log "GET /readyz, API metrics on :9103, no /metrics on the API port"
    local url expected code
    for url in "$API_URL/readyz=200" "http://127.0.0.1:9103/metrics=200" "$API_URL/metrics=404"; do
        expected=${url##*=} url=${url%=*}
        code=$(curl -sS -o /dev/null --max-time 5 -w '%{http_code}' "$url") || code=000
        echo "  $url -> $code"
        [[ $code == "$expected" ]] || die "$url answered $code, expected $expected"
    done
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
    prepare
    timed "build + up (healthy)" start_stack
    timed "until prices appear" wait_for_prices
    check_services
    check_endpoints
}

main "$@"
