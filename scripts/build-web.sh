#!/usr/bin/env bash
# Builds the dashboard (web/) into web/dist, which the API serves at / (API_WEB_DIR): installs the
# locked npm dependencies when web/node_modules is missing or older than web/package-lock.json,
# then runs web/build.mjs (esbuild; content-hashed asset names). Needs Node.js 18+ and npm.
#
#   scripts/build-web.sh             # into web/dist
#   scripts/build-web.sh --out DIR   # elsewhere
set -euo pipefail
cd "$(dirname "$0")/../web"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "build-web: node and npm are needed (Debian: apt-get install -y nodejs npm)" >&2
    exit 1
fi
stamp=node_modules/.package-lock.json # npm rewrites it on every install
if [[ ! -f $stamp || package-lock.json -nt $stamp ]]; then
    echo "== web: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs "$@"
