#!/usr/bin/env bash
# The one test command (README, and what .ci/run calls): installs what is missing, starts Redis and
# ClickHouse on loopback, lints, then runs the test suite against the real servers and chdb.
#   scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh start
scripts/cluster.sh start  # the Redis Cluster (and ClickHouse cluster) the cluster tests run on

echo "== lint"
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache | tail -n 6  # one-way layers (pyproject.toml); fails the run if broken
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff . | head -50; exit 1; }
.venv/bin/hadolint Dockerfile
CLICKTRAIL_ADMIN_TOKEN=lint CLICKTRAIL_SECRET_KEY=lint docker-compose -f docker-compose.yml config -q
CLICKTRAIL_ADMIN_TOKEN=lint CLICKTRAIL_SECRET_KEY=lint docker-compose -f docker-compose.cluster.yml config -q

echo "== alert rules"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

echo "== tests"
# The string hash places the link cache's records in shards and marks: name the seed so that a failure
# that follows it can be run again (PYTHONHASHSEED=N scripts/test.sh ...).
export PYTHONHASHSEED="${PYTHONHASHSEED:-$((RANDOM * 32768 + RANDOM))}"
echo "PYTHONHASHSEED=$PYTHONHASHSEED"
set +e
.venv/bin/pytest "$@"
status=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
if [[ $status -eq 5 ]]; then echo "no tests ran" >&2; exit 1; fi
exit $status
