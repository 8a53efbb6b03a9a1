#!/usr/bin/env bash
# Run the whole system locally: installs what is missing, starts Redis and ClickHouse on loopback, applies
# the schema, then runs the ingester, the attributor (every 60 s), the event delivery worker and the HTTP
# service on :8000.
# Ctrl-C (or SIGTERM) stops them in order: the server first (drains and flushes), then the workers.
#   scripts/run.sh [serve options, e.g. --workers 2]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh start

export CLICKTRAIL_DATA_DIR=${CLICKTRAIL_DATA_DIR:-$(pwd)/.clicktrail}
if [[ -z ${CLICKTRAIL_ADMIN_TOKEN:-} ]]; then
    token_file=$CLICKTRAIL_DATA_DIR/admin_token
    [[ -s $token_file ]] || (umask 077; .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(24))" >"$token_file")
    CLICKTRAIL_ADMIN_TOKEN=$(cat "$token_file")
    export CLICKTRAIL_ADMIN_TOKEN
    echo "admin token (from $token_file): $CLICKTRAIL_ADMIN_TOKEN"
fi

bin=.venv/bin/clicktrail
$bin migrate
$bin ingest & ingest_pid=$!
$bin attribute --every 60 & attribute_pid=$!
$bin deliver & deliver_pid=$!
$bin serve "$@" & serve_pid=$!
echo "clicktrail is up: http://127.0.0.1:8000 (metrics at /metrics); Ctrl-C stops it"

stop() {
    trap - INT TERM
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    kill -TERM "$ingest_pid" "$attribute_pid" "$deliver_pid" 2>/dev/null || true
    wait "$ingest_pid" "$attribute_pid" "$deliver_pid" 2>/dev/null || true
}
trap stop INT TERM
wait "$serve_pid" || true
stop
