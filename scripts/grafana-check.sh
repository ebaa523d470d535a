#!/usr/bin/env bash
# Validates the Grafana dashboards (deploy/grafana/dashboards/*.json) against Grafana's published
# dashboard schema: the TypeScript types that the npm package @grafana/schema generates from
# Grafana's CUE schema, checked by the TypeScript compiler (deploy/grafana/check/check.mjs: each
# dashboard an object literal that must `satisfies` the Dashboard type, each panel's options and
# custom field config its plugin's types). The broken dashboards of deploy/grafana/check/rejected
# must each be rejected, for the reason their description names: the negative controls. Installs
# the locked npm packages (package-lock.json) into deploy/grafana/check/node_modules when missing
# or older than the lock, as scripts/build-web.sh does for web/. Needs Node.js 18+ and npm. About
# 2 seconds once installed. What each panel's PromQL returns is checked by scripts/alert-drill.sh.
#
#   scripts/grafana-check.sh                 (scripts/test.sh runs it)
#   scripts/grafana-check.sh FILE.json...    other dashboards (each must pass; no controls)
#
# Prints "grafana-schema: N passed, M failed", which .ci/run counts.
set -euo pipefail
files=()
for file in "$@"; do files+=("$(realpath "$file")"); done
cd "$(dirname "$0")/../deploy/grafana/check"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "grafana-check: node and npm are needed (Debian: apt-get install -y nodejs npm)" >&2
    exit 1
fi
stamp=node_modules/.package-lock.json # npm rewrites it on every install
if [[ ! -f $stamp || package-lock.json -nt $stamp ]]; then
    echo "== grafana-check: npm ci (@grafana/schema, typescript)"
    npm ci --no-audit --no-fund --loglevel=error
fi
node check.mjs ${files[@]+"${files[@]}"}
