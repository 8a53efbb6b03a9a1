#!/usr/bin/env bash
# A local 6-node Redis Cluster (3 primaries, 3 replicas) on loopback ports 7001-7006, from Debian's
# redis-server, with data, configs and logs under .clicktrail/cluster/redis/. No system services: plain
# daemons with pid files. Starting twice is harmless; `status` exits non-zero unless the cluster is ok.
#   scripts/cluster-redis.sh start|stop|status|env
#   scripts/cluster-redis.sh restart-node PORT   (start one node again, e.g. after a fault test killed it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${CLICKTRAIL_DATA_DIR:-$ROOT/.clicktrail}/cluster/redis
FIRST_PORT=${CLICKTRAIL_CLUSTER_REDIS_FIRST_PORT:-7001}
NODES=6
PORTS=$(seq "$FIRST_PORT" $((FIRST_PORT + NODES - 1)))
# 3 s, not the default 15 s: a killed primary is replaced by its replica in about 3-4 s.
NODE_TIMEOUT_MS=${CLICKTRAIL_CLUSTER_REDIS_NODE_TIMEOUT_MS:-3000}

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
node_up() { cli "$1" ping >/dev/null 2>&1; }
cluster_ok() { cli "$FIRST_PORT" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }
# Every node has joined (the gossip has converged) and every slot is served.
cluster_formed() {
    cluster_ok || return 1
    local known; known=$(cli "$FIRST_PORT" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')
    [[ $known == "$NODES" ]]
}

start_node() {
    local port=$1 dir=$DATA/$1
    node_up "$port" && return 0
    mkdir -p "$dir"
    # Same persistence as scripts/services.sh (AOF, fsync every second); see README "Durability".
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$NODE_TIMEOUT_MS" \
        --appendonly yes --appendfsync everysec --save "" \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
}

wait_nodes() {
    for _ in $(seq 100); do
        local down=0
        for port in $PORTS; do node_up "$port" || down=1; done
        [[ $down == 0 ]] && return 0
        sleep 0.1
    done
    echo "redis cluster nodes did not start; see $DATA/*/redis.log" >&2; return 1
}

start() {
    for port in $PORTS; do start_node "$port"; done
    wait_nodes
    if ! cluster_ok; then
        # A node that knows only itself has never been in a cluster: create it (first start). Nodes
        # restarted from their nodes.conf find each other again by themselves.
        local known; known=$(cli "$FIRST_PORT" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')
        if [[ $known == 1 ]]; then
            local addrs=""
            for port in $PORTS; do addrs+="127.0.0.1:$port "; done
            # shellcheck disable=SC2086
            redis-cli --cluster create $addrs --cluster-replicas 1 --cluster-yes >"$DATA/create.log" 2>&1 || {
                cat "$DATA/create.log" >&2; return 1; }
        fi
    fi
    for _ in $(seq 300); do cluster_formed && break; sleep 0.1; done
    cluster_formed || { echo "redis cluster is not ok; see $DATA/create.log" >&2; return 1; }
    echo "redis cluster: 127.0.0.1:$FIRST_PORT-$((FIRST_PORT + NODES - 1)) ($DATA)"
}

stop() {
    for port in $PORTS; do
        local pidfile=$DATA/$port/redis.pid
        [[ -f $pidfile ]] || continue
        local pid; pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pidfile"
    done
}

status() {
    local down=0
    for port in $PORTS; do
        if node_up "$port"; then
            echo "redis $port up ($(cli "$port" role | head -1))"
        else
            echo "redis $port down"; down=1
        fi
    done
    if cluster_ok; then echo "redis cluster ok"; else echo "redis cluster down"; down=1; fi
    return $down
}

case ${1:-start} in
    start) start;;
    stop) stop;;
    status) status;;
    # Several nodes in the URL: a client that starts while one of them is down still finds the cluster.
    env) echo "CLICKTRAIL_REDIS_CLUSTER=true"
         echo "CLICKTRAIL_REDIS_URL=redis://127.0.0.1:$FIRST_PORT,127.0.0.1:$((FIRST_PORT + 1)),127.0.0.1:$((FIRST_PORT + 2))/0";;
    restart-node) start_node "$2"; for _ in $(seq 100); do node_up "$2" && break; sleep 0.1; done;;
    *) echo "usage: $0 start|stop|status|env|restart-node PORT" >&2; exit 2;;
esac
