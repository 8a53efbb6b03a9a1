"""Redirects on standalone Redis vs the Redis Cluster vs the cluster with `REDIS_MIN_REPLICAS_ACKED=1`,
measured back to back in one run with the redirect benchmark's wrk script (systems.py):

    .venv/bin/python -m benchmarks.cluster --duration 10 --links 1000

Standalone is a private redis-server (benchmarks/redis_server.py); the cluster is the local one of
scripts/cluster-redis.sh (started if needed), under a key prefix of this run's own. Per system: requests/s,
p99, redirects per second of server CPU, and Redis commands per click (summed over the primaries, from
INFO's total_commands_processed, which includes the workers' background reads)."""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from benchmarks import procs
from benchmarks.codes import code_for, destination_for
from benchmarks.redis_server import private_redis
from benchmarks.systems import CREATOR_ID, ROOT, BenchOptions, _wrk, clicktrail_env

CLUSTER_URL = "redis://127.0.0.1:7001/0"
SYSTEMS = ("standalone", "cluster", "cluster_acked1")


def _client(url: str, cluster: bool):
    return redis.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)


def _seed(url: str, cluster: bool, prefix: str, links: int) -> None:
    from core.keys import Keys
    from core.links import Link, encode_link

    keys = Keys(prefix, cluster=cluster, click_shards=6 if cluster else 1)
    now_ms = time.time_ns() // 1_000_000
    client = _client(url, cluster)
    try:
        records = {
            keys.link(code_for(i)): encode_link(
                Link(code_for(i), destination_for(i), CREATOR_ID, "shop.example.com", now_ms)
            )
            for i in range(links)
        }
        if cluster:
            client.mset_nonatomic(records)
        else:
            client.mset(records)
    finally:
        client.close()


def _commands(url: str, cluster: bool) -> int:
    client = _client(url, cluster)
    try:
        if not cluster:
            return int(client.info("stats")["total_commands_processed"])
        stats = client.info("stats", target_nodes=redis.RedisCluster.PRIMARIES)
        return sum(int(s["total_commands_processed"]) for s in stats.values())
    finally:
        client.close()


def _clean(url: str, cluster: bool, prefix: str) -> None:
    client = _client(url, cluster)
    try:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    finally:
        client.close()


def measure(work: Path, url: str, system: str, links: int, opts: BenchOptions) -> dict:
    cluster = system != "standalone"
    prefix = f"bc{secrets.token_hex(3)}:"
    _seed(url, cluster, prefix, links)
    env = clicktrail_env(url, work / "data") | {"CLICKTRAIL_REDIS_PREFIX": prefix}
    if cluster:
        env |= {"CLICKTRAIL_REDIS_CLUSTER": "true"}
    if system == "cluster_acked1":
        env |= {"CLICKTRAIL_REDIS_MIN_REPLICAS_ACKED": "1"}
    port = procs.free_port()
    cmd = [sys.executable, "-m", "clicktrail.cli", "serve", "--host", procs.LOOPBACK, "--port", str(port)]
    proc = procs.start(cmd, log_path=work / "serve.log", env=env, cwd=ROOT)
    try:
        procs.wait_http(proc, port, "/readyz")
        time.sleep(1)  # the worker's link watcher connects
        before = _commands(url, cluster)
        figures = _wrk(port, links, opts, cpu={"server": proc.pid})
        after = _commands(url, cluster)
    finally:
        procs.stop(proc)
        _clean(url, cluster, prefix)
    requests = figures["requests"] or 1
    return {
        "system": system,
        "requests_per_s": figures["requests_per_s"],
        "p99_ms": figures["latency_ms"]["p99"],
        "requests_per_server_cpu_s": figures.get("requests_per_server_cpu_s"),
        "redis_commands_per_click": round((after - before) / requests, 4),
        "statuses": figures.get("statuses"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--links", type=int, default=1000)
    args = parser.parse_args(argv)
    opts = BenchOptions(duration_s=args.duration)
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "cluster-redis.sh"), "start"], check=True, capture_output=True
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="ct-bench-cluster-") as tmp:
        work = Path(tmp)
        with private_redis(work / "redis") as url:
            results.append(measure(work / "standalone", url, "standalone", args.links, opts))
        for system in SYSTEMS[1:]:
            results.append(measure(work / system, CLUSTER_URL, system, args.links, opts))
    base = results[0]["requests_per_s"] or 1
    for row in results:
        row["vs_standalone"] = round(row["requests_per_s"] / base, 3)
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
