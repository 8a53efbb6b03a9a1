#!/usr/bin/env bash
# Start (or stop) the local Redis and ClickHouse that clicktrail uses, on loopback, with their data under
# .clicktrail/. No systemd: plain daemons with pid files. Starting twice is harmless.
#   scripts/services.sh start|stop|status
#   scripts/services.sh clickhouse-config DIR TCP_PORT HTTP_PORT   (write a config only)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${CLICKTRAIL_DATA_DIR:-$ROOT/.clicktrail}
REDIS_PORT=${CLICKTRAIL_REDIS_PORT:-6379}
CH_PORT=${CLICKTRAIL_CLICKHOUSE_PORT:-9000}
CH_HTTP_PORT=${CLICKTRAIL_CLICKHOUSE_HTTP_PORT:-8123}
# everysec: an acknowledged click can be lost only if the Redis *host* dies within a second; "always"
# closes that window at the cost of one fsync per write (see README, "Durability").
REDIS_APPENDFSYNC=${CLICKTRAIL_REDIS_APPENDFSYNC:-everysec}

redis_up() { redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; }
ch_up() { clickhouse-client --port "$CH_PORT" -q "SELECT 1" >/dev/null 2>&1; }

start_redis() {
    redis_up && return 0
    mkdir -p "$DATA/redis"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA/redis" \
        --appendonly yes --appendfsync "$REDIS_APPENDFSYNC" --save "" \
        --daemonize yes --pidfile "$DATA/redis/redis.pid" --logfile "$DATA/redis/redis.log"
    for _ in $(seq 50); do redis_up && return 0; sleep 0.1; done
    echo "redis did not start; see $DATA/redis/redis.log" >&2; return 1
}

# write_ch_config DIR TCP_PORT HTTP_PORT: the server config the project runs ClickHouse with (also used by
# loadtests/, through the `clickhouse-config` command, for its private servers).
write_ch_config() {
    local dir=$1 tcp=$2 http=$3
    mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
    cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$tcp</tcp_port>
  <http_port>$http</http_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <timezone>UTC</timezone>
</yandex>
XML
    cat >"$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage><poll_interval>1</poll_interval></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
XML
}

start_clickhouse() {
    ch_up && return 0
    local dir=$DATA/clickhouse
    write_ch_config "$dir" "$CH_PORT" "$CH_HTTP_PORT"
    clickhouse-server --config-file="$dir/config.xml" --pid-file="$dir/clickhouse.pid" --daemon \
        >/dev/null 2>&1 || clickhouse-server --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
    for _ in $(seq 150); do ch_up && return 0; sleep 0.2; done
    echo "clickhouse did not start; see $dir/log/err.log" >&2; return 1
}

stop_pidfile() {
    local pidfile=$1
    [[ -f $pidfile ]] || return 0
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
}

case ${1:-start} in
    start) start_redis; start_clickhouse; echo "services: redis :$REDIS_PORT, clickhouse :$CH_PORT ($DATA)";;
    stop) stop_pidfile "$DATA/redis/redis.pid"; stop_pidfile "$DATA/clickhouse/clickhouse.pid";;
    clickhouse-config) write_ch_config "$2" "$3" "$4";;
    status) redis_up && echo "redis up" || echo "redis down"; ch_up && echo "clickhouse up" || echo "clickhouse down";;
    *) echo "usage: $0 start|stop|status|clickhouse-config DIR TCP HTTP" >&2; exit 2;;
esac
