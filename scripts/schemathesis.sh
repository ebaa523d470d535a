#!/usr/bin/env bash
# Schemathesis against the API's own OpenAPI document, with every check: the API binary serves a
# fresh, seeded database on the running PostgreSQL, Schemathesis generates requests from
# /v1/openapi.json (schema-valid ones must be accepted, schema-invalid ones rejected with a 4xx,
# responses must match the document, no 5xx), then the API and the database are removed again.
#
#   scripts/schemathesis.sh                               # needs `scripts/services.sh up` first
#   SCHEMATHESIS_MAX_EXAMPLES=1000 SCHEMATHESIS_SEED=7 scripts/schemathesis.sh
#
# Settings (environment):
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation, default 200 (about 2 minutes on 2 cores, most of it
#                              watching event streams for half a second each)
#   SCHEMATHESIS_SEED          Hypothesis seed, default 1 (fixed, so CI is repeatable; vary it to explore)
#   TICKPIPE_CACHE_DIR         where the Schemathesis virtualenv is kept, default ~/.cache/tickpipe
#
# Needs python3 with pip (a virtualenv when the venv module works, else `pip install --target`), cargo,
# and the PostgreSQL of scripts/services.sh. Progress goes to stderr, Schemathesis' report to stdout.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

# Pinned, with every dependency, so that a run on a fresh machine resolves what was tested here.
ST_VERSION=4.32.5
ST_REQUIREMENTS="
anyio==4.16.0
certifi==2026.10.19.post1
charset-normalizer==3.5.3
click==8.5.1
graphql-core==3.3.2
harfile==0.6.0
hypothesis==6.170.17
hypothesis-graphql==0.13.5
idna==3.20
iniconfig==2.3.1
jsonschema_rs==0.60.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
packaging==26.4
pluggy==1.7.0
Pygments==2.21.0
pyrate-limiter==4.5.1
pytest==9.2.0
PyYAML==6.0.4
requests==2.34.2
rich==15.0.0
schemathesis==$ST_VERSION
sortedcontainers==2.4.0
typing_extensions==4.16.0
urllib3==2.8.0
Werkzeug==3.1.9
"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-200}"
SEED="${SCHEMATHESIS_SEED:-1}"
# Same default as scripts/services.sh (HOME may be unset under some CI runners).
CACHE_DIR="${TICKPIPE_CACHE_DIR:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/tickpipe}"
INSTALL_DIR="$CACHE_DIR/schemathesis-$ST_VERSION"

say() { echo "schemathesis.sh: $*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

command -v python3 >/dev/null || die "python3 is missing"

# ---------------------------------------------------------------------------------------------------------
# Schemathesis, installed once per version. A `.complete` marker is written last, so an interrupted
# install is redone rather than trusted.
# ---------------------------------------------------------------------------------------------------------
ST=()

install_schemathesis() {
    local requirements="$INSTALL_DIR.requirements.txt"
    if [[ -f "$INSTALL_DIR/.complete" ]]; then
        use_installed
        return
    fi
    say "installing Schemathesis $ST_VERSION into $INSTALL_DIR"
    rm -rf "$INSTALL_DIR"
    mkdir -p "$CACHE_DIR"
    printf '%s\n' "$ST_REQUIREMENTS" >"$requirements"
    if python3 -m venv "$INSTALL_DIR" >/dev/null 2>&1 && [[ -x "$INSTALL_DIR/bin/pip" ]]; then
        "$INSTALL_DIR/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2 ||
            die "pip could not install Schemathesis $ST_VERSION"
        echo venv >"$INSTALL_DIR/.complete"
    else
        # No venv module (Debian without python3-venv): a plain target directory works with pip alone.
        say "python3 -m venv is unavailable; installing with pip --target"
        rm -rf "$INSTALL_DIR"
        python3 -m pip install --quiet --disable-pip-version-check --target "$INSTALL_DIR/site" \
            -r "$requirements" >&2 || die "pip could not install Schemathesis $ST_VERSION"
        echo target >"$INSTALL_DIR/.complete"
    fi
    use_installed
}

use_installed() {
    if [[ "$(cat "$INSTALL_DIR/.complete")" == venv ]]; then
        ST=("$INSTALL_DIR/bin/python" -m schemathesis.cli)
    else
        ST=(env "PYTHONPATH=$INSTALL_DIR/site" python3 -m schemathesis.cli)
    fi
}

# ---------------------------------------------------------------------------------------------------------
# The API under test, on a database of its own.
# ---------------------------------------------------------------------------------------------------------
WORK_DIR=
API_PID=
DB_NAME=

cleanup() {
    local status=$?
    if [[ -n "$API_PID" ]] && kill -0 "$API_PID" 2>/dev/null; then
        kill -TERM "$API_PID" 2>/dev/null || true
        wait "$API_PID" 2>/dev/null || true
    fi
    if [[ -n "$DB_NAME" ]]; then
        "$build_dir"/examples/schemathesis_db drop "$DB_NAME" ||
            say "could not drop database $DB_NAME"
    fi
    if [[ -n "$WORK_DIR" ]]; then
        if ((status != 0)) && [[ -f "$WORK_DIR/api.log" ]]; then
            say "last 30 lines of the API's log:"
            tail -n 30 "$WORK_DIR/api.log" >&2
        fi
        rm -rf "$WORK_DIR"
    fi
    exit "$status"
}
trap cleanup EXIT

install_schemathesis
say "$("${ST[@]}" --version 2>&1 | head -n 1)"

eval "$(bash scripts/services.sh env)"

build_dir="${CARGO_TARGET_DIR:-target}/debug"
say "building the api binary and the database helper (debug, $build_dir)"
cargo build --locked --quiet -p tickpipe-api --bin api --example schemathesis_db

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tickpipe-schemathesis.XXXXXX")"
db_url="$("$build_dir"/examples/schemathesis_db create)"
DB_NAME="${db_url##*/}"
say "seeded database $DB_NAME"

# A free port: bind port 0, read it, release it (nothing else on this machine races for it in practice).
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
# Without rate limits: Schemathesis sends thousands of requests from one address, and a 429 (documented
# for the limited operations) would fail its checks that schema-valid requests are accepted.
API_BIND="127.0.0.1:$port" METRICS_ADDR=127.0.0.1:0 DATABASE_URL="$db_url" RUST_LOG=warn LOG_FORMAT=text \
    API_RATE_LIMIT_RPS=0 "$build_dir"/api >"$WORK_DIR/api.log" 2>&1 &
API_PID=$!

python3 - "$base/readyz" <<'EOF' || die "the API did not get ready at $base (see its log below)"
import sys, time, urllib.request
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF
say "API ready at $base (pid $API_PID)"

# Three rules span parameters, which JSON Schema cannot state (the OpenAPI descriptions do): startTime
# must be earlier than endTime, a cursor continues only the kind of query that returned it, and a
# `sort` given beside a cursor must be the cursor's order (one text per order).
# Schemathesis generates each parameter on its own, so schema-valid data breaks them by chance; a
# 400 naming exactly one of these rules, for a request that has the parameters it names, is not
# counted as "valid data rejected". Any other failure, including any other 400 for valid data, is.
#
# One answer depends on the data, which no schema can state either: a stream resumed from a change id
# the log does not hold (older than the 24 hours kept, or newer than its newest, as most generated
# ids are) is a 410 telling the client to reload. A 410 from /v1/stream-prices saying so, for a
# request that gave an id, is not counted as "valid data rejected" either.
cat >"$WORK_DIR/hooks.py" <<'EOF'
import schemathesis

CROSS_PARAMETER_RULES = {
    "startTime must be earlier than endTime": ("startTime", "endTime"),
    "cursor belongs to a different kind of query; repeat the parameters of the request that returned it": ("cursor",),
    "cursor continues a sort=asc query, not sort=desc; give sort=asc or leave sort out": ("cursor", "sort"),
    "cursor continues a sort=desc query, not sort=asc; give sort=desc or leave sort out": ("cursor", "sort"),
}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST202" or response.status_code not in (400, 410):
        return True
    try:
        detail = response.json().get("detail")
    except Exception:
        return True
    query = case.query or {}
    if response.status_code == 410:
        headers = {name.lower() for name in (case.headers or {})}
        gave_id = "since" in query or "last-event-id" in headers
        return not (
            case.path == "/v1/stream-prices" and gave_id and "reload from /v1/get-prices" in (detail or "")
        )
    needed = CROSS_PARAMETER_RULES.get(detail)
    return not (needed and all(name in query for name in needed))
EOF

# An event stream does not end by itself: Schemathesis reads one until 20 events have arrived, the
# stream has been silent for the request timeout, or that timeout has passed in all, then checks
# every event that arrived against the document (a resumed stream sends its backlog at once; a live
# one on this idle database sends only its opening line). Half a second is plenty for either.
cat >"$WORK_DIR/schemathesis.toml" <<'EOF'
[[operations]]
include-path = "/v1/stream-prices"
request-timeout = 0.5
EOF

say "running Schemathesis: all checks, $MAX_EXAMPLES examples per operation, seed $SEED"
# From the work directory: Schemathesis keeps .hypothesis/ and .schemathesis/ in the current one.
(
    cd "$WORK_DIR"
    NO_COLOR=1 SCHEMATHESIS_HOOKS="$WORK_DIR/hooks.py" "${ST[@]}" run "$base/v1/openapi.json" \
        --checks all --max-examples "$MAX_EXAMPLES" --seed "$SEED" --request-timeout 10
)
say "no failures"
