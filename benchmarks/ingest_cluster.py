"""Ingest into one ClickHouse node vs the two-shard cluster, same clicks, same run.

    .venv/bin/python -m benchmarks.ingest --cluster --clicks 400000

The same N clicks (entries of 2,000, as the recorder writes them under load) are put into a private Redis
twice, under two key prefixes; one ingest process drains the first into a private single ClickHouse
18.16 started for the run (the shared one on :9000 also serves other work, which would be counted), then
the second into one on the local cluster (scripts/cluster-clickhouse.sh:
2 shards x 2 replicas on 9101-9104, each row written to its shard's local replicated table). For each:
the wall time, the ingester's CPU per click, and the ClickHouse servers' CPU per click (all four nodes on
the cluster: inserting, merging, and the replicas fetching parts), counted from /proc. Each run checks
that every click is stored once and the rollups agree. The sizing figures are the CPU ones: on a shared
2-core machine, wall time mostly shows what else was running.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import secrets
import tempfile
import threading
import time
from pathlib import Path

import redis

from benchmarks.ingest import AGENTS, PER_ENTRY, consumer, fill, make_clicks
from benchmarks.redis_server import private_redis
from core import queries
from core.clickhouse import NativeClickHouse
from core.clickid import ClickIds
from core.cluster import ClusterClickHouse
from core.keys import Keys
from core.migrate import migrate
from loadtests.services import ClickHouseServer

CLUSTER_URL = "clickhouse://default:@127.0.0.1:9101/default"
CLUSTER = "clicktrail"
CLUSTER_ALT_HOSTS = ("127.0.0.1:9102", "127.0.0.1:9103", "127.0.0.1:9104")
CLUSTER_PORTS = (9101, 9102, 9103, 9104)


def listener_pids(ports: tuple[int, ...]) -> list[int]:
    """The pids listening on these loopback TCP ports (from /proc/net/tcp and each process's fds)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) in ports:  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                pids.add(int(proc.name))
        except OSError:
            continue
    return sorted(pids)


def cpu_s(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _drain(redis_url: str, prefix: str, node_url: str, database: str, batch_size: int) -> None:
    client = redis.Redis.from_url(redis_url)
    backend = (
        ClusterClickHouse(CLUSTER_URL, CLUSTER, CLUSTER_ALT_HOSTS, database=database)
        if not node_url
        else NativeClickHouse(node_url, database=database)
    )
    if not consumer(client, backend, Keys(prefix), batch_size, "bench").run(threading.Event(), once=True):
        raise SystemExit(1)


def _one(
    redis_url: str, prefix: str, backend, node: ClickHouseServer | None, count: int, batch_size: int
) -> dict:
    pids = [node.proc.pid] if node and node.proc else listener_pids(CLUSTER_PORTS)
    node_url = node.url("default") if node else ""
    worker = multiprocessing.get_context("fork").Process(
        target=_drain, args=(redis_url, prefix, node_url, backend.database, batch_size)
    )
    rusage_before, server_before = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_s(pids)
    started = time.perf_counter()
    worker.start()
    worker.join()
    assert worker.exitcode == 0
    wall_s = time.perf_counter() - started
    time.sleep(2)  # let the replicas fetch and the first merges run: their CPU is part of the cost
    server_s = cpu_s(pids) - server_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ingest_cpu_s = (after.ru_utime + after.ru_stime) - (rusage_before.ru_utime + rusage_before.ru_stime)
    totals = queries.rollup_totals(backend)
    return {
        "stored": queries.click_count(backend),
        "rollups_agree": len(set(totals.values())) == 1,
        "ingest_s": round(wall_s, 2),
        "clicks_per_s": round(count / wall_s),
        "ingester_cpu_us_per_click": round(ingest_cpu_s / count * 1e6, 1),
        "clickhouse_cpu_us_per_click": round(server_s / count * 1e6, 1),
        "clickhouse_servers": len(pids),
    }


def run(count: int, batch_size: int) -> dict:
    """Figures for one node and for the cluster; the databases and the Redis are removed at the end."""
    run_id = secrets.token_hex(3)
    cluster = ClusterClickHouse(
        CLUSTER_URL, CLUSTER, CLUSTER_ALT_HOSTS, database=f"ct_bench_cluster_{run_id}"
    )
    ids = ClickIds(secrets.token_bytes(16))
    start_ms = int(time.time() * 1000) - 6 * 3_600_000
    clicks = make_clicks(ids, count, start_ms, 6 * 3_600_000 / count, AGENTS)
    figures: dict = {"clicks": count, "batch_size": batch_size, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as work, private_redis(Path(work)) as url:
        server = ClickHouseServer(Path(work) / "clickhouse")
        server.start()
        node = NativeClickHouse(server.url(f"ct_bench_node_{run_id}"))
        try:
            migrate(node, log=lambda _line: None)
            migrate(cluster, log=lambda _line: None)
            client = redis.Redis.from_url(url)
            for name, backend, private in (("one_node", node, server), ("two_shards", cluster, None)):
                prefix = f"ct:bench:{name}:"
                fill(client, Keys(prefix).clicks, clicks, PER_ENTRY)
                consumer(client, backend, Keys(prefix), batch_size)  # the group, before the drain
                figures[name] = _one(url, prefix, backend, private, count, batch_size)
                assert figures[name]["stored"] == count, figures[name]
            client.close()
        finally:
            cluster.execute(f"DROP DATABASE IF EXISTS {cluster.database} ON CLUSTER {CLUSTER}")
            cluster.close()
            node.close()
            server.stop()
    one, two = figures["one_node"], figures["two_shards"]
    figures["cluster_vs_node_clicks_per_s"] = round(two["clicks_per_s"] / one["clicks_per_s"], 2)
    # Per shard: the cluster's ClickHouse CPU is spread over two shards (each with its replica's fetches).
    figures["clickhouse_cpu_us_per_click_per_shard"] = round(two["clickhouse_cpu_us_per_click"] / 2, 1)
    return figures
