"""Bounded load and fault scenarios against the real system (issue 5, section 1).

Each scenario starts its own redis-server and clickhouse-server on free loopback ports in a temporary
directory, runs `clicktrail migrate`, `serve`, `ingest` (and `attribute`) as processes, drives load,
injects its fault by signalling the real process, and checks in ClickHouse that every answered click is
stored exactly once. `python -m loadtests --help`; `--smoke` for the seconds-long variant the tests run."""

from __future__ import annotations

from collections.abc import Callable

from loadtests.api_load import api_load
from loadtests.bad_input import bad_input
from loadtests.clickhouse_cluster_faults import replica_kill, zookeeper_stop
from loadtests.cluster_faults import cluster_ingester_kill, primary_kill
from loadtests.pipeline_faults import clickhouse_stop, ingester_kill, worker_kill
from loadtests.redis_faults import persistence, redis_kill, redis_pause
from loadtests.slow_clients import slow_clients
from loadtests.webhook_flood import webhook_flood
from loadtests.zookeeper_flaps import zookeeper_flaps

SCENARIOS: dict[str, Callable] = {
    "persistence": persistence,
    "redis_kill": redis_kill,
    "clickhouse_stop": clickhouse_stop,
    "ingester_kill": ingester_kill,
    "worker_kill": worker_kill,
    "redis_pause": redis_pause,
    "slow_clients": slow_clients,
    "bad_input": bad_input,
    "webhook_flood": webhook_flood,
    "api_load": api_load,
    # On the local Redis Cluster (scripts/cluster-redis.sh): docs/cluster.md.
    "cluster_primary_kill_acked1": primary_kill(1),
    "cluster_primary_kill_acked0": primary_kill(0),
    "cluster_ingester_kill": cluster_ingester_kill,
    # On the local ClickHouse cluster (scripts/cluster-clickhouse.sh): docs/cluster.md.
    "replica_kill": replica_kill,
    "zookeeper_stop": zookeeper_stop,
    "zookeeper_flaps": zookeeper_flaps,
}
