"""Faults on the local Redis Cluster (scripts/cluster-redis.sh, ports 7001-7006) with a private ClickHouse:
a primary SIGKILLed under redirect load with and without `REDIS_MIN_REPLICAS_ACKED=1`, and an ingester
SIGKILLed while two ingesters share the click-stream shards. Each scenario works in its own key prefix and
restores the cluster afterwards: the killed node is started again and rejoins as a replica."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from core.keys import Keys
from core.streaminfo import stream_lag
from loadtests.common import WARMUP_S, Run, check_answers, load, recorder_counts, run_async
from loadtests.system import System
from loadtests.verdict import Verdict, check_exactly_once

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPT = ROOT / "scripts" / "cluster-redis.sh"
CLUSTER_URL = "redis://127.0.0.1:7001/0"
CLICK_SHARDS = 6
# A failover takes about 3-4 s with the cluster's 3 s node timeout; the cluster must be whole again
# (every slot served, the killed node back as a replica) within this.
RESTORE_TIMEOUT_S = 60


class ClusterRedis:
    """The shared local cluster in the shape loadtests' System expects of its Redis."""

    def __init__(self, prefix: str) -> None:
        self.url = CLUSTER_URL
        self.prefix = prefix

    def client(self, **kwargs) -> redis.RedisCluster:
        return redis.RedisCluster.from_url(self.url, **kwargs)

    def start(self) -> None:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], check=True, capture_output=True)

    def stop(self) -> None:
        """The cluster is shared: only this scenario's keys go."""
        client = self.client()
        try:
            for key in client.scan_iter(match=self.prefix + "*", count=1000):
                client.delete(key)
        finally:
            client.close()


class ClusterSystem(System):
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.cluster_prefix = f"lt{secrets.token_hex(3)}:"
        env = {
            **env,
            "CLICKTRAIL_REDIS_CLUSTER": "true",
            "CLICKTRAIL_REDIS_CLICK_SHARDS": str(CLICK_SHARDS),
        }
        super().__init__(root, env=env)
        self.redis = ClusterRedis(self.cluster_prefix)
        self.keys = Keys(self.cluster_prefix, cluster=True, click_shards=CLICK_SHARDS)

    def env(self) -> dict[str, str]:
        return {**super().env(), "CLICKTRAIL_REDIS_PREFIX": self.cluster_prefix}  # the cluster is shared

    def click_lag(self) -> tuple[int, float]:
        client = self.redis_client()
        try:
            total, oldest = 0, 0.0
            for stream in self.keys.click_streams:
                if client.exists(stream):
                    count, age = stream_lag(client, stream, "ingest")
                    total, oldest = total + count, max(oldest, age)
            return total, oldest
        finally:
            client.close()

    def spawn_ingest(self, consumer: str):
        return self._spawn(f"ingest-{consumer}", "ingest", "--consumer", consumer)


def primary_of(key: str) -> int:
    """The port of the primary that serves `key` now."""
    client = redis.RedisCluster.from_url(CLUSTER_URL)
    try:
        return client.get_node_from_key(key).port
    finally:
        client.close()


def kill_node(port: int) -> Path:
    """SIGKILL the node on `port`; returns its data directory (the cluster may have been started by another
    checkout: the node says where its nodes.conf is)."""
    node = redis.Redis(port=port, socket_timeout=5)
    try:
        pid = int(node.info("server")["process_id"])
        directory = Path(node.config_get("dir")["dir"])
    finally:
        node.close()
    os.kill(pid, signal.SIGKILL)
    return directory


def restore(port: int, directory: Path) -> tuple[bool, str]:
    """Start the killed node again from its own directory; it rejoins from its nodes.conf and becomes a
    replica of its successor."""
    data_dir = directory.parent.parent.parent  # <data dir>/cluster/redis/<port>
    env = {**os.environ, "CLICKTRAIL_DATA_DIR": str(data_dir)}
    subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "restart-node", str(port)], check=True, capture_output=True, env=env
    )
    deadline = time.monotonic() + RESTORE_TIMEOUT_S
    role = ""
    while time.monotonic() < deadline:
        try:
            node = redis.Redis(port=port, socket_timeout=1)
            role = node.role()[0].decode()
            ok = node.cluster("info")["cluster_state"] == "ok"
            node.close()
            if ok and role == "slave":
                return True, role
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.5)
    return False, role


def primary_kill(replicas: int):
    def scenario(run: Run) -> Verdict:
        """A primary that holds click shards SIGKILLed under redirect load; its replica takes over."""
        verdict = Verdict(f"cluster_primary_kill_acked{replicas}", run.mode)
        base_s, lead_s, tail_s = run.pick((5, 2, 15), (2, 1, 8))
        system = ClusterSystem(run.root, {**run.env, "CLICKTRAIL_REDIS_MIN_REPLICAS_ACKED": str(replicas)})
        # A primary holding click shards, other than the node the URL names (a client starting during the
        # outage must reach the cluster through it).
        victim = next(
            port for port in map(primary_of, system.keys.click_streams) if port != urlsplit(CLUSTER_URL).port
        )
        try:
            system.start()
            codes = system.make_links(20)

            async def main():
                base = await load(system, codes, base_s, run, warmup_s=WARMUP_S)
                fault = asyncio.create_task(load(system, codes, lead_s + tail_s, run))
                await asyncio.sleep(lead_s)
                directory = await asyncio.to_thread(kill_node, victim)
                return base, await fault, directory

            base, fault, directory = run_async(main())
            restored, role = restore(victim, directory)
            verdict.check("killed node back as a replica, cluster ok", restored, f"port {victim}: {role}")
            check_answers(verdict, base, fault)
            answered = base.click_ids + fault.click_ids
            system.wait_drained(run.pick(120, 60), expected=len(set(answered)))
            stored, total, distinct = system.stored_clicks()
            lost = len(set(answered) - set(stored))
            verdict.figures["answered"] = len(answered)
            verdict.figures["lost"] = lost
            verdict.figures["recorder"] = recorder_counts(system)
            if replicas:
                check_exactly_once(verdict, answered, stored, total, distinct)
            else:  # measured, not enforced: an answered click may be only on the primary that died
                verdict.check("answered clicks lost (measured)", True, f"{lost} of {len(answered)}", False)
                verdict.check("none stored twice", total == distinct, f"{total} rows, {distinct} distinct")
        finally:
            system.close()
        return verdict

    return scenario


def cluster_ingester_kill(run: Run) -> Verdict:
    """Two ingesters share the click shards under redirect load; one is SIGKILLed with entries pending in
    its shards; the other claims them after the idle time: every answered click stored exactly once."""
    verdict = Verdict("cluster_ingester_kill", run.mode)
    load_s = run.pick(20, 8)
    env = {
        **run.env,
        "CLICKTRAIL_INGEST_CLAIM_IDLE_MS": "3000",
        "CLICKTRAIL_CLICKHOUSE_INSERT_TIMEOUT_S": "2",
    }
    system = ClusterSystem(run.root, env)
    try:
        system.start(ingest=False)
        codes = system.make_links(20)
        doomed, survivor = system.spawn_ingest("doomed"), system.spawn_ingest("survivor")

        async def main():
            task = asyncio.create_task(load(system, codes, load_s, run))
            await asyncio.sleep(load_s / 2)
            doomed.kill()
            return await task

        stats = run_async(main())
        doomed.wait()
        check_answers(verdict, stats)
        answered = stats.click_ids
        system.wait_drained(run.pick(120, 60), expected=len(set(answered)))
        stored, total, distinct = system.stored_clicks()
        verdict.figures["answered"] = len(answered)
        check_exactly_once(verdict, answered, stored, total, distinct)
        survivor.terminate()
        survivor.wait(30)
    finally:
        system.close()
    return verdict
