#!/usr/bin/env bash
# The local cluster topology: the Redis Cluster (scripts/cluster-redis.sh) and, where present, the
# ClickHouse cluster (scripts/cluster-clickhouse.sh), driven by one subcommand.
#   scripts/cluster.sh start|stop|status|env
# `env` prints the CLICKTRAIL_* settings that point clicktrail at them (`set -a; . <(scripts/cluster.sh env)`).
set -euo pipefail
cd "$(dirname "$0")/.."
parts=(scripts/cluster-redis.sh)
[[ -f scripts/cluster-clickhouse.sh ]] && parts+=(scripts/cluster-clickhouse.sh)

case ${1:-start} in
    start|stop)
        for part in "${parts[@]}"; do bash "$part" "$1"; done;;
    status)
        status=0
        for part in "${parts[@]}"; do bash "$part" status || status=1; done
        exit $status;;
    env)
        for part in "${parts[@]}"; do bash "$part" env; done | grep '^CLICKTRAIL_' | sort -u;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2;;
esac
