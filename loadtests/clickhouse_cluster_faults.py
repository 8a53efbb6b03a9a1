"""Faults of the ClickHouse cluster (scripts/cluster-clickhouse.sh: 2 shards x 2 replicas, ZooKeeper) under
redirect load, with a private Redis and the real `serve` and `ingest` processes:

- `replica_kill`: SIGKILL the first replica of shard 1 (the one inserts and reads go to) during
  ingestion, load on, bring it back: every answered click stored once, both replicas of each shard
  agree, the rollups agree with the raw clicks.
- `zookeeper_stop`: stop ZooKeeper for 30 s (smoke: 5 s) during ingestion: replicated tables turn
  read-only, the backlog waits in Redis, drains once ZooKeeper is back; exact counts.

The scenarios run on a private cluster (`CH_CLUSTER_OFFSET=100`: ZooKeeper on 2281, nodes on 9201-9204,
data under .clicktrail/cluster-100/), never on the shared one on 2181 and 9101-9104 that the test suite
uses: other tests must not see ZooKeeper stop or a node die. They start it, use its database
`clicktrail` (dropped first), and stop it at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from core.cluster import READ_SETTINGS
from core.clusterddl import local_name
from loadtests.common import WARMUP_S, Run, check_answers, drain_and_count, load, run_async
from loadtests.load import LoadStats
from loadtests.system import DATABASE, System
from loadtests.verdict import Verdict

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "cluster-clickhouse.sh"
CLUSTER = "clicktrail"
OFFSET = 100  # scripts/cluster-clickhouse.sh CH_CLUSTER_OFFSET: every port of the shared cluster + 100
PORTS = tuple(9100 + OFFSET + n for n in (1, 2, 3, 4))
SHARDS = (PORTS[:2], PORTS[2:])
KILLED_NODE = 1  # shard 1, replica r1: first in remote_servers order, so inserts and reads use it
# The ingester backs off up to 5 s between attempts and waits its insert timeout after a failed insert:
# a short timeout lets the smoke run drain within its seconds.
SMOKE_ENV = {"CLICKTRAIL_CLICKHOUSE_INSERT_TIMEOUT_S": "2"}
SAMPLE_EVERY_S = 0.5
# ClickHouse answers while a replica has no live ZooKeeper session: KEEPER_EXCEPTION, NO_ZOOKEEPER,
# TABLE_IS_READ_ONLY; a catch-up retries them for at most SYNC_WAIT_S.
ZOOKEEPER_CODES = frozenset({999, 225, 242})
SYNC_WAIT_S = 60
# The raw clicks and each rollup, with what a replica's local table of it sums to: equal when exact.
CLICK_TABLES = (
    ("clicks", "count()"),
    ("clicks_daily", "sum(clicks)"),
    ("creator_clicks_daily", "sum(clicks)"),
    ("merchant_clicks_daily", "sum(clicks)"),
    ("clicks_daily_dims", "sum(clicks)"),
)


def _script(*args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRAIL_")}
    env["CH_CLUSTER_OFFSET"] = str(OFFSET)
    subprocess.run(
        [str(SCRIPT), *args], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, timeout=120
    )


class ClusterNodes:
    """The cluster in the place of `System.ch`: the URL and a reading client for the scenario's database."""

    def url(self, database: str) -> str:
        return f"clickhouse://default:@127.0.0.1:{PORTS[0]}/{database}"

    def client(self, database: str = "default", port: int = PORTS[0]) -> Client:
        alt = ",".join(f"127.0.0.1:{p}" for p in PORTS if p != port)
        return Client("127.0.0.1", port=port, database=database, alt_hosts=alt, settings=READ_SETTINGS)

    def start(self) -> None:
        _script("start")

    def stop(self) -> None:
        """The private cluster's four servers and ZooKeeper hold memory the shared machine needs."""
        _script("stop")

    def zookeeper(self, action: str) -> None:
        """`start` or `stop` the private cluster's ZooKeeper."""
        _script(f"zookeeper-{action}")

    def reset(self) -> None:
        client = self.client()
        try:
            client.execute(f"DROP DATABASE IF EXISTS {DATABASE} ON CLUSTER {CLUSTER}")
        finally:
            client.disconnect()

    def replica_totals(self) -> list[list[dict[str, int]]]:
        """Each replica's clicks and rollup sums (its own local tables), per shard, once it caught up with
        every one of them: a rollup read before its replica fetched a part another replica committed
        looks short, though nothing is lost."""
        totals = []
        deadline = time.monotonic() + SYNC_WAIT_S  # one wait for all the replicas, not one each
        for shard in SHARDS:
            row = []
            for port in shard:
                client = Client("127.0.0.1", port=port, database=DATABASE)
                try:
                    for table, _ in CLICK_TABLES:
                        sync_replica(client, local_name(table), deadline - time.monotonic())
                    row.append({
                        table: int(client.execute(f"SELECT {expr} FROM {local_name(table)}")[0][0] or 0)
                        for table, expr in CLICK_TABLES
                    })  # fmt: skip
                finally:
                    client.disconnect()
            totals.append(row)
        return totals

    def rollups_agree(self) -> tuple[bool, dict]:
        client = self.client(DATABASE)
        try:
            totals = {
                name: int(client.execute(f"SELECT {expr} FROM {name}")[0][0]) for name, expr in CLICK_TABLES
            }
        finally:
            client.disconnect()
        return len(set(totals.values())) == 1, totals


def sync_replica(client: Client, table: str, wait_s: float = SYNC_WAIT_S, pause_s: float = 0.5) -> None:
    """SYSTEM SYNC REPLICA, again while the replica has no ZooKeeper session yet: right after ZooKeeper
    came back, 18.16 answers with the expired session (Code 999 "Session expired") or read-only until its
    restarting thread opens a new one, a few seconds later."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.execute(f"SYSTEM SYNC REPLICA {table}")
            return
        except ServerException as exc:
            if exc.code not in ZOOKEEPER_CODES or time.monotonic() > deadline:
                raise
            time.sleep(pause_s)


def _system(run: Run) -> tuple[System, ClusterNodes]:
    nodes = ClusterNodes()
    nodes.start()
    nodes.reset()
    env = {
        "CLICKTRAIL_CLICKHOUSE_CLUSTER": CLUSTER,
        "CLICKTRAIL_CLICKHOUSE_ALT_HOSTS": ",".join(f"127.0.0.1:{p}" for p in PORTS[1:]),
        **(SMOKE_ENV if run.smoke else {}),
    }
    system = run.system(env=env, clickhouse=False)
    system.ch = nodes  # type: ignore[assignment]
    return system, nodes


def _cluster_checks(verdict: Verdict, nodes: ClusterNodes) -> None:
    replica_checks(verdict, nodes.replica_totals())
    agree, totals = nodes.rollups_agree()
    verdict.figures["rollup_totals"] = totals
    verdict.check("rollups agree with the raw clicks", agree, f"{totals}")


def replica_checks(verdict: Verdict, totals: list[list[dict[str, int]]]) -> None:
    """Both replicas of each shard hold the same clicks and rollups, and on each replica every rollup
    sums to its clicks (read after every replica caught up: `replica_totals`)."""
    counts = [[replica["clicks"] for replica in shard] for shard in totals]
    verdict.figures["clicks_local_per_replica"] = counts
    verdict.check(
        "both replicas of each shard hold the same rows",
        all(shard[0] == other for shard in totals for other in shard[1:]),
        f"clicks and rollup sums per replica, per shard: {totals}",
    )
    verdict.check(
        "every replica's rollups agree with its clicks",
        all(len(set(replica.values())) == 1 for shard in totals for replica in shard),
        f"clicks and rollup sums per replica, per shard: {totals}",
    )


class BacklogSampler(threading.Thread):
    """The click backlog in Redis (entries not yet stored) every SAMPLE_EVERY_S, with its time."""

    def __init__(self, system: System) -> None:
        super().__init__(daemon=True)
        self.system, self.samples, self.halt = system, [], threading.Event()

    def run(self) -> None:
        while not self.halt.wait(SAMPLE_EVERY_S):
            with contextlib.suppress(Exception):
                self.samples.append((time.monotonic(), self.system.click_lag()[0]))

    def figures(self, faulted_at: float, healed_at: float) -> dict:
        # Under steady load the backlog is never empty (a batch waits up to the flush interval): "drained"
        # means back to the peak seen before the fault.
        before = max((n for t, n in self.samples if t < faulted_at), default=0)
        during = [n for t, n in self.samples if faulted_at <= t <= healed_at + 1]
        drained = [t for t, n in self.samples if t > healed_at and n <= before]
        return {
            "backlog_before_fault_peak_entries": before,
            # (seconds from the fault, entries) about every 2 s: where the backlog grew and drained
            "backlog_timeline": [(round(t - faulted_at), n) for t, n in self.samples[::4]],
            "backlog_peak_entries": max(during, default=0),
            "backlog_drained_after_heal_s": round(drained[0] - healed_at, 1) if drained else None,
        }


def _fault_run(run: Run, verdict: Verdict, lead_s: float, down_s: float, tail_s: float, fault, heal) -> None:
    system, nodes = _system(run)
    sampler = BacklogSampler(system)
    try:
        system.start()
        codes = system.make_links(20)
        sampler.start()

        async def main() -> tuple[LoadStats, LoadStats]:
            base = await load(system, codes, lead_s, run, warmup_s=WARMUP_S)
            during = LoadStats()
            task = asyncio.create_task(load(system, codes, down_s + tail_s, run, during))
            await asyncio.to_thread(fault)
            faulted_at = time.monotonic()
            await asyncio.sleep(down_s)
            await asyncio.to_thread(heal)
            healed_at = time.monotonic()
            verdict.figures["healed_after_s"] = round(healed_at - faulted_at, 1)
            await task
            verdict.figures.update(sampler.figures(faulted_at, healed_at))
            return base, during

        base, during = run_async(main())
        check_answers(verdict, base, during)
        started = time.monotonic()
        drain_and_count(verdict, system, base.click_ids + during.click_ids, run.pick(180, 90))
        verdict.figures["drained_after_heal_s"] = round(time.monotonic() - started, 1)
        _cluster_checks(verdict, nodes)
    finally:
        sampler.halt.set()
        system.close()


def replica_kill(run: Run) -> Verdict:
    """SIGKILL shard 1's first replica during ingestion for 20 s (smoke: 5 s), then restart it."""
    verdict = Verdict("replica_kill", run.mode)
    lead_s, down_s, tail_s = run.pick((5, 20, 10), (2, 5, 3))
    pid_file = ROOT / ".clicktrail" / f"cluster-{OFFSET}" / f"ch{KILLED_NODE}" / "clickhouse.pid"

    def kill() -> None:
        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)

    _fault_run(run, verdict, lead_s, down_s, tail_s, kill, lambda: _script("node-start", str(KILLED_NODE)))
    return verdict


def zookeeper_stop(run: Run) -> Verdict:
    """ZooKeeper stopped for 30 s (smoke: 5 s) during ingestion, then started again."""
    verdict = Verdict("zookeeper_stop", run.mode)
    lead_s, down_s, tail_s = run.pick((5, 30, 10), (2, 5, 3))
    _fault_run(
        run,
        verdict,
        lead_s,
        down_s,
        tail_s,
        lambda: _script("zookeeper-stop"),
        lambda: _script("zookeeper-start"),
    )
    return verdict
