#!/usr/bin/env bash
# The soak: the real generator at SOAK_RATE msgs/s for SOAK_SECS seconds into a 3-partition topic, two
# aggregators sharing it, each stopped with SIGTERM and started again every SOAK_RESTART_SECS (slot 1
# half a period after slot 0), and one API under a light steady load: SOAK_STREAMS open
# /v1/stream-prices streams and one /v1/get-prices request every SOAK_REQUEST_MS ms (scripts/soak.py).
# Every SOAK_SAMPLE_SECS it samples the aggregators' and the API's resident memory (VmRSS) and open file
# descriptors (/proc/PID/fd) and the PostgreSQL connections to the soak's database; each aggregator is
# also sampled just before its SIGTERM and 15 s after each start. At the end the generator stops, the
# aggregators drain, and the fault drill's referee (aggregator/examples/drill_check.rs) reads the whole
# topic and compares every window. Then it prints the samples, a least-squares slope per series (per
# hour and as % of its mean: the API's and the connections' over the whole run, the aggregators' per
# run), the load's figures and the referee's verdict. A benchmark, not part of scripts/test.sh: timings on
# a shared machine are not pass/fail; it exits non-zero only if the referee finds a difference, the
# generator fails or an aggregator exits on its own or does not stop cleanly on SIGTERM.
#
#   scripts/soak.sh                                     # one hour, restarts every 10 minutes
#   SOAK_SECS=120 SOAK_RESTART_SECS=40 scripts/soak.sh  # a 2-minute smoke run of the script
#   SOAK_BIN=/tmp/soak-bin scripts/soak.sh              # binaries copied there beforehand (no build)
#
# The services are scripts/services.sh's (started if not running, left running); its TICKPIPE_STATE_DIR,
# TICKPIPE_KAFKA_PORT and TICKPIPE_PG_PORT select a separate set. Each run has its own topic, database,
# group and dead-letter topic, named soak_<epoch>_<pid>; the logs, samples and events are in
# $TICKPIPE_STATE_DIR/<that name>/, printed at the start.
#
# Environment: SOAK_SECS (3600), SOAK_RESTART_SECS (600), SOAK_RATE (1000), SOAK_STREAMS (100),
# SOAK_REQUEST_MS (100), SOAK_SAMPLE_SECS (60), SOAK_STOP_TIMEOUT_SECS (60: how long an aggregator may
# take to stop on SIGTERM before it is SIGKILLed and the soak fails), SOAK_RUST_LOG (info), SOAK_BIN
# (a directory holding generator, aggregator, api and drill_check; unset: cargo builds the release
# profile and the binaries are copied into the logs directory, so a rebuild during the run changes nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECS=${SOAK_SECS:-3600}
SOAK_RESTART_SECS=${SOAK_RESTART_SECS:-600}
SOAK_RATE=${SOAK_RATE:-1000}
SOAK_STREAMS=${SOAK_STREAMS:-100}
SOAK_REQUEST_MS=${SOAK_REQUEST_MS:-100}
SOAK_SAMPLE_SECS=${SOAK_SAMPLE_SECS:-60}
SOAK_STOP_TIMEOUT_SECS=${SOAK_STOP_TIMEOUT_SECS:-60}

bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"

run_id="soak_$(date +%s)_$$"
topic=$run_id
logs="$TICKPIPE_STATE_DIR/$run_id"
mkdir -p "$logs"
db_url="${DATABASE_URL%/*}/$run_id"

if [[ -n "${SOAK_BIN:-}" ]]; then
    bin=$SOAK_BIN
else
    echo "== soak: building (release profile)"
    cargo build --locked -q --release -p tickpipe-generator -p tickpipe-aggregator -p tickpipe-api --bins --examples
    bin="$logs/bin"
    mkdir -p "$bin"
    release="${CARGO_TARGET_DIR:-target}/release"
    cp "$release/generator" "$release/aggregator" "$release/api" "$release/examples/drill_check" "$bin/"
    git rev-parse HEAD >"$bin/COMMIT"
    git status --porcelain --untracked-files=no | sed -n '1{s/.*/(working tree modified)/p}' >>"$bin/COMMIT"
fi
for name in generator aggregator api drill_check; do
    [[ -x "$bin/$name" ]] || { echo "soak: $bin/$name is missing" >&2; exit 2; }
done

psql -q "$DATABASE_URL" -c "CREATE DATABASE $run_id"

now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
events="$logs/events.tsv" # seconds since the generator started <TAB> what happened
t() { echo $(((($(now_ms) - t0)) / 1000)); }
event() { printf '%s\t%s\n' "$(t)" "$1" >>"$events"; }

common_env=(KAFKA_BROKERS="$KAFKA_BROKERS" KAFKA_TOPIC="$topic" LOG_FORMAT=json RUST_LOG="${SOAK_RUST_LOG:-info}")
aggregator_env=("${common_env[@]}" METRICS_ADDR=127.0.0.1:0 DATABASE_URL="$db_url" AGGREGATOR_GROUP_ID="$run_id"
    AGGREGATOR_DLQ_TOPIC="$run_id.dlq")
api_port=$(free_port)
api_env=(DATABASE_URL="$db_url" LOG_FORMAT=json RUST_LOG="${SOAK_RUST_LOG:-info}" METRICS_ADDR=127.0.0.1:0
    API_BIND="127.0.0.1:$api_port" API_RATE_LIMIT_RPS=0) # its load comes from one address

generator_pid=
api_pid=
load_pid=
declare -A agg_pid
cleanup() {
    for pid in "$load_pid" "$api_pid" "${agg_pid[0]:-}" "${agg_pid[1]:-}" "$generator_pid"; do
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

start_aggregator() { # slot
    env -i PATH="$PATH" "${aggregator_env[@]}" "$bin/aggregator" >>"$logs/aggregator-$1.log" 2>&1 &
    agg_pid[$1]=$!
    event "aggregator $1 started (pid $!)"
}

gone() { # pid: exited (bash reaps its children; a zombie counts as gone too)
    ! kill -0 "$1" 2>/dev/null || [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == Z ]]
}

status=0
stop_aggregator() { # slot
    local pid=${agg_pid[$1]} from=$SECONDS code=0
    kill -TERM "$pid" 2>/dev/null || true
    while ! gone "$pid" && ((SECONDS - from < SOAK_STOP_TIMEOUT_SECS)); do sleep 0.2; done
    if ! gone "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        event "aggregator $1 (pid $pid) did not stop within $SOAK_STOP_TIMEOUT_SECS s of SIGTERM: SIGKILLed"
        status=1
    fi
    wait "$pid" || code=$?
    event "aggregator $1 (pid $pid) stopped $((SECONDS - from)) s after SIGTERM, exit $code"
    if ((code != 0)); then
        echo "soak: aggregator $1 (pid $pid) exited $code after SIGTERM; see $logs/aggregator-$1.log" >&2
        status=1
    fi
}

# One row of samples.tsv. Memory in KiB, from /proc/PID/status; "-" for a process that is not running.
samples="$logs/samples.tsv"
printf '%s\n' "kind	t	load1	agg0_pid	agg0_rss_kib	agg0_hwm_kib	agg0_fds	agg1_pid	agg1_rss_kib	agg1_hwm_kib	agg1_fds	api_rss_kib	api_fds	pg_conns	events	requests" >"$samples"
proc_figures() { # pid -> "rss hwm fds"
    local pid=$1 rss hwm fds
    if [[ -z "$pid" ]] || gone "$pid"; then
        echo "- - -"
        return
    fi
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || rss=
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || hwm=
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    echo "${rss:--} ${hwm:--} ${fds:--}"
}
sample() { # kind
    local a0 a1 api pg load status_json events_seen=- requests=-
    read -r -a a0 <<<"$(proc_figures "${agg_pid[0]:-}")"
    read -r -a a1 <<<"$(proc_figures "${agg_pid[1]:-}")"
    read -r -a api <<<"$(proc_figures "$api_pid")"
    pg=$(psql -XtAq "$DATABASE_URL" -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$run_id'" 2>/dev/null) || pg=-
    load=$(cut -d' ' -f1 /proc/loadavg)
    if [[ -s "$logs/load.json" ]]; then
        status_json=$(cat "$logs/load.json")
        events_seen=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events_total"])' "$status_json" 2>/dev/null || echo -)
        requests=$(python3 -c 'import json,sys; print(sum(json.loads(sys.argv[1])["requests"].values()))' "$status_json" 2>/dev/null || echo -)
    fi
    printf '%s\n' "$1	$(t)	$load	${agg_pid[0]:--}	${a0[0]}	${a0[1]}	${a0[2]}	${agg_pid[1]:--}	${a1[0]}	${a1[1]}	${a1[2]}	${api[0]}	${api[2]}	$pg	$events_seen	$requests" >>"$samples"
}

echo "== soak: $(date -u +%FT%TZ), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo);" \
    "binaries in $bin$([[ -f "$bin/COMMIT" ]] && printf ' (built from %s)' "$(tr '\n' ' ' <"$bin/COMMIT" | sed 's/ $//')")"
echo "== soak: topic $topic, $SOAK_RATE msgs/s for $SOAK_SECS s, aggregators restarted every $SOAK_RESTART_SECS s," \
    "$SOAK_STREAMS streams + a request every $SOAK_REQUEST_MS ms, samples every $SOAK_SAMPLE_SECS s; logs in $logs"
t0=$(now_ms)
: >"$events"
env -i PATH="$PATH" "${common_env[@]}" METRICS_ADDR=127.0.0.1:0 GENERATOR_RATE="$SOAK_RATE" \
    GENERATOR_MAX_MESSAGES=$((SOAK_RATE * SOAK_SECS)) GENERATOR_FLUSH_TIMEOUT_SECS=180 GENERATOR_PARTITIONS=3 \
    "$bin/generator" >"$logs/generator.log" 2>&1 &
generator_pid=$!
event "generator started (pid $generator_pid)"
sleep 3 # the generator creates the topic; aggregators subscribe to an existing one
start_aggregator 0
start_aggregator 1

# The API reads the tables the aggregators' migrations create.
for _ in $(seq 1 120); do
    [[ "$(psql -XtAq "$db_url" -c "SELECT to_regclass('window_prices') IS NOT NULL" 2>/dev/null)" == t ]] && break
    sleep 0.5
done
env -i PATH="$PATH" "${api_env[@]}" "$bin/api" >"$logs/api.log" 2>&1 &
api_pid=$!
event "api started (pid $api_pid, port $api_port)"
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$api_port/readyz" >/dev/null 2>&1 && break
    sleep 0.5
done
python3 scripts/soak.py load "http://127.0.0.1:$api_port" "$SOAK_STREAMS" "$SOAK_REQUEST_MS" "$logs/load.json" \
    2>"$logs/load.log" &
load_pid=$!
event "load started: $SOAK_STREAMS streams, a request every $SOAK_REQUEST_MS ms"
# The first sample once every stream is open (or 60 s have passed).
for _ in $(seq 1 120); do
    python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["streams_open"] < int(sys.argv[2]))' \
        "$logs/load.json" "$SOAK_STREAMS" 2>/dev/null && break
    sleep 0.5
done
event "load: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["streams_open"])' "$logs/load.json" 2>/dev/null || echo 0) streams open"

next_sample=$(t)
declare -A next_restart after_start
next_restart[0]=$SOAK_RESTART_SECS
next_restart[1]=$((SOAK_RESTART_SECS / 2))
after_start[0]=15
after_start[1]=15
restarts=0
while ! gone "$generator_pid"; do
    now=$(t)
    for slot in 0 1; do
        if gone "${agg_pid[$slot]}"; then
            code=0
            wait "${agg_pid[$slot]}" || code=$?
            event "aggregator $slot (pid ${agg_pid[$slot]}) exited on its own, exit $code; started again"
            echo "soak: aggregator $slot (pid ${agg_pid[$slot]}) exited on its own (exit $code); see $logs/aggregator-$slot.log" >&2
            status=1
            start_aggregator "$slot"
        fi
        if ((now >= next_restart[$slot] && now < SOAK_SECS)); then
            sample "pre-stop"
            stop_aggregator "$slot"
            start_aggregator "$slot"
            restarts=$((restarts + 1))
            echo "   t=$(t)s aggregator $slot restarted (SIGTERM, then started again)"
            next_restart[$slot]=$((next_restart[$slot] + SOAK_RESTART_SECS))
            after_start[$slot]=$(($(t) + 15))
        fi
    done
    due=0
    for slot in 0 1; do
        if ((after_start[$slot] > 0 && now >= after_start[$slot])); then
            due=1
            after_start[$slot]=0
        fi
    done
    ((due == 0)) || sample "start+15s"
    if ((now >= next_sample)); then
        sample minute
        next_sample=$((next_sample + SOAK_SAMPLE_SECS))
    fi
    sleep 1
done
generator_status=0
wait "$generator_pid" || generator_status=$?
event "generator finished (exit $generator_status)"
sample end
echo "   t=$(t)s generator finished (exit $generator_status) after $restarts aggregator restarts"

kill -TERM "$load_pid" 2>/dev/null || true
wait "$load_pid" || true
load_pid=
kill -TERM "$api_pid" 2>/dev/null || true
api_status=0
wait "$api_pid" || api_status=$?
api_pid=
event "load and api stopped (api exit $api_status)"

summary=$(grep '"generator stopped"' "$logs/generator.log" | tail -n 1 || true)
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], "?"))' "$summary" "$1" 2>/dev/null || echo "?"; }

echo "== soak: aggregators draining; the referee reads the whole topic"
referee_status=0
env KAFKA_BROKERS="$KAFKA_BROKERS" KAFKA_TOPIC="$topic" DATABASE_URL="$db_url" \
    DRILL_PRODUCED="$(field sent)" DRILL_ACKNOWLEDGED="$(field acknowledged)" \
    "$bin/drill_check" 2>&1 | tee "$logs/referee.txt" || referee_status=$?
event "referee finished (exit $referee_status)"
sample drained # the aggregators alone, after the referee
for slot in 0 1; do
    stop_aggregator "$slot"
    agg_pid[$slot]=
done

echo "== soak: figures (t = seconds since the generator started)"
python3 scripts/soak.py report "$samples" "$events"
echo
echo "   load: $(cat "$logs/load.json" 2>/dev/null || echo 'no status')"
echo "   load average over the samples (1 min): $(awk -F'\t' 'NR > 1 && $3 != "-" {n++; s += $3; if ($3 > m) m = $3; if (l == "" || $3 < l) l = $3} END {if (n) printf "min %.2f, mean %.2f, max %.2f", l, s / n, m}' "$samples")"
echo "   generator: sent $(field sent), acknowledged $(field acknowledged), failed $(field failed) (exit $generator_status)"
echo "   API exit on SIGTERM: $api_status"
echo "   referee: $(if ((referee_status == 0)); then echo 'every window exact'; else echo "FAILED (exit $referee_status)"; fi)"
if ((generator_status != 0)); then
    echo "soak: the generator failed (exit $generator_status); see $logs/generator.log" >&2
    status=1
fi
((referee_status == 0)) || status=1
echo "== soak: logs in $logs"
exit "$status"
