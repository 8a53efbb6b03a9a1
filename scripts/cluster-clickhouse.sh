#!/usr/bin/env bash
# The local ClickHouse cluster: ZooKeeper 3.8 on 127.0.0.1:2181 and four ClickHouse 18.16 servers from
# Debian, 2 shards x 2 replicas, cluster `clicktrail`, all on loopback, data/config/logs under
# .clicktrail/cluster/. No system services: plain daemons with pid files. Starting twice is harmless.
#   scripts/cluster-clickhouse.sh start|stop|status|env
#   scripts/cluster-clickhouse.sh zookeeper-start|zookeeper-stop   (fault tests stop ZooKeeper alone)
#   scripts/cluster-clickhouse.sh node-start N                     (restart node N=1..4 after a kill)
# Node N listens on native 9100+N, http 8130+N, interserver 9110+N; nodes 1,2 are shard 1, 3,4 shard 2.
# CH_CLUSTER_OFFSET=K (default 0) runs a second, private cluster: every port above plus K (ZooKeeper on
# 2181+K), data under .clicktrail/cluster-K/. The fault scenarios (loadtests/clickhouse_cluster_faults.py)
# stop ZooKeeper and kill nodes on such a private one, never on the shared cluster other tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${CLICKTRAIL_DATA_DIR:-$ROOT/.clicktrail}
OFFSET=${CH_CLUSTER_OFFSET:-0}
if ((OFFSET)); then CL=$DATA/cluster-$OFFSET; else CL=$DATA/cluster; fi
ZK_PORT=$((2181 + OFFSET))
CLUSTER=clicktrail
NODES=(1 2 3 4)
# Memory is shared with everything else on the machine: small caches, few background threads, and a
# small JVM heap (ZooKeeper holds only ClickHouse's replication log and DDL queue).
MARK_CACHE_BYTES=67108864
ZK_HEAP_MB=256

native_port() { echo $((9100 + OFFSET + $1)); }
http_port() { echo $((8130 + OFFSET + $1)); }
interserver_port() { echo $((9110 + OFFSET + $1)); }
shard_of() { echo $(((($1 - 1) / 2) + 1)); }
replica_of() { echo "r$(((($1 - 1) % 2) + 1))"; }

# Serving, not merely running: `ruok` answers imok while ZooKeeper still loads its data and refuses
# sessions, and a ClickHouse server that starts then exits on the failed handshake.
zk_up() {
    local answer
    answer=$( (exec 3<>/dev/tcp/127.0.0.1/$ZK_PORT && printf stat >&3 && timeout 2 cat <&3) 2>/dev/null) || return 1
    [[ $answer == *"Mode: "* ]]
}
node_up() { clickhouse-client --port "$(native_port "$1")" -q "SELECT 1" >/dev/null 2>&1; }
# ClickHouse opens its ports only after loading its tables: a cheap probe for the wait loop.
node_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$(native_port "$1")") 2>/dev/null; }

start_zookeeper() {
    zk_up && return 0
    local dir=$CL/zookeeper
    mkdir -p "$dir/data" "$dir/log"
    cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,mntr
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
CFG
    cat >"$dir/log4j.properties" <<CFG
log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=$dir/log/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n
CFG
    # zookeeper.jar's manifest names its dependencies under /usr/share/java.
    setsid java "-Xmx${ZK_HEAP_MB}m" -Dzookeeper.log.dir="$dir/log" \
        -Dlog4j.configuration="file:$dir/log4j.properties" \
        -cp "$dir:/usr/share/java/zookeeper.jar" org.apache.zookeeper.server.quorum.QuorumPeerMain \
        "$dir/zoo.cfg" >"$dir/log/stdout.log" 2>&1 </dev/null &
    echo $! >"$dir/zookeeper.pid"
    for _ in $(seq 150); do zk_up && return 0; sleep 0.1; done
    echo "zookeeper did not start; see $dir/log/" >&2
    return 1
}

remote_servers() {
    local shard
    echo "<remote_servers><$CLUSTER>"
    for shard in 1 2; do
        echo "<shard><internal_replication>true</internal_replication>"
        for n in "${NODES[@]}"; do
            [[ $(shard_of "$n") == "$shard" ]] || continue
            echo "<replica><host>127.0.0.1</host><port>$(native_port "$n")</port></replica>"
        done
        echo "</shard>"
    done
    echo "</$CLUSTER></remote_servers>"
}

write_node_config() {
    local n=$1 dir=$CL/ch$1
    scripts/services.sh clickhouse-config "$dir" "$(native_port "$n")" "$(http_port "$n")"
    mkdir -p "$dir/config.d" "$dir/users.d"
    cat >"$dir/config.d/cluster.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <mark_cache_size replace="replace">$MARK_CACHE_BYTES</mark_cache_size>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>$(interserver_port "$n")</interserver_http_port>
  <zookeeper><node><host>127.0.0.1</host><port>$ZK_PORT</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>
  <macros><shard>$(shard_of "$n")</shard><replica>$(replica_of "$n")</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  $(remote_servers)
</yandex>
XML
    cat >"$dir/users.d/cluster.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default>
    <background_pool_size>4</background_pool_size>
    <background_schedule_pool_size>4</background_schedule_pool_size>
    <max_memory_usage replace="replace">1000000000</max_memory_usage>
  </default></profiles>
</yandex>
XML
}

start_node() {
    local n=$1 dir=$CL/ch$1
    node_up "$n" && return 0
    write_node_config "$n"
    clickhouse-server --config-file="$dir/config.xml" --pid-file="$dir/clickhouse.pid" --daemon \
        >"$dir/log/stdout.log" 2>&1
}

wait_node() {
    local n=$1 pidfile=$CL/ch$1/clickhouse.pid
    # A node restarted after a SIGKILL takes 15-20 s to load its replicated tables on this machine; one
    # that exited during start-up (ZooKeeper refused its first session) is started again.
    for i in $(seq 600); do
        node_listening "$n" && node_up "$n" && return 0
        if ((i % 50 == 0)) && ! { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
            start_node "$n"
        fi
        sleep 0.1
    done
    echo "clickhouse node $n did not start; see $CL/ch$n/log/err.log" >&2
    return 1
}

stop_pidfile() {
    local pidfile=$1
    [[ -f $pidfile ]] || return 0
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

print_env() {
    local alts=() n
    for n in "${NODES[@]:1}"; do alts+=("127.0.0.1:$(native_port "$n")"); done
    echo "CLICKTRAIL_CLICKHOUSE_URL=clickhouse://default:@127.0.0.1:$(native_port 1)/clicktrail"
    echo "CLICKTRAIL_CLICKHOUSE_CLUSTER=$CLUSTER"
    echo "CLICKTRAIL_CLICKHOUSE_ALT_HOSTS=$(IFS=,; echo "${alts[*]}")"
}

case ${1:-start} in
    start)
        start_zookeeper
        for n in "${NODES[@]}"; do start_node "$n"; done
        for n in "${NODES[@]}"; do wait_node "$n"; done
        echo "clickhouse cluster: zookeeper :$ZK_PORT, nodes :$(native_port 1)-$(native_port 4) ($CL)"
        ;;
    stop)
        for n in "${NODES[@]}"; do stop_pidfile "$CL/ch$n/clickhouse.pid"; done
        stop_pidfile "$CL/zookeeper/zookeeper.pid"
        ;;
    status)
        zk_up && echo "zookeeper up" || echo "zookeeper down"
        for n in "${NODES[@]}"; do
            node_up "$n" && echo "clickhouse node $n (:$(native_port "$n")) up" \
                || echo "clickhouse node $n (:$(native_port "$n")) down"
        done
        ;;
    env) print_env ;;
    zookeeper-start) start_zookeeper ;;
    zookeeper-stop) stop_pidfile "$CL/zookeeper/zookeeper.pid" ;;
    node-start) start_node "$2" && wait_node "$2" ;;
    *) echo "usage: $0 start|stop|status|env|zookeeper-start|zookeeper-stop|node-start N" >&2; exit 2 ;;
esac
