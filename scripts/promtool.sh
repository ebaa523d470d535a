#!/usr/bin/env bash
# Checks the Prometheus files in deploy/prometheus with promtool (Debian's `prometheus` package):
# the configuration (which also checks the rule files it loads), the alert rules, and the rules'
# unit tests (deploy/prometheus/tests/*.test.yml: every alert fires on the series that should
# trigger it and stays silent on healthy ones). Exits non-zero on the first failure; on success
# prints "promtool: N passed, 0 failed", N the checks plus the unit-test cases, which .ci/run counts.
#
#   scripts/promtool.sh          (scripts/test.sh runs it)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v promtool >/dev/null || {
    echo "promtool is not on PATH (Debian: apt-get install prometheus; .ci/run installs it)" >&2
    exit 1
}
dir=deploy/prometheus
checks=0
for config in "$dir"/prometheus*.yml; do
    promtool check config "$config"
    checks=$((checks + 1))
done
promtool check rules "$dir"/rules/*.yml
checks=$((checks + 1))
cases=0
for tests in "$dir"/tests/*.test.yml; do
    promtool test rules "$tests"
    # One case per test group (each starts with its `interval:`).
    cases=$((cases + $(grep -c '^  - interval:' "$tests")))
done
echo "promtool: $((checks + cases)) passed, 0 failed"
