"""`zookeeper_flaps`: ZooKeeper stopped for a second, again and again, while four writers insert clicks
through the cluster backend as the ingester does (the same rows again after a failure, never new ones),
on the private cluster of clickhouse_cluster_faults.py.

A one-long outage (`zookeeper_stop`) mostly finds the tables read-only before an insert begins; short
outages timed to strike while inserts commit reach the two states that only a commit cut by ZooKeeper
leaves: a part kept on one replica that ZooKeeper never recorded ("Unknown status",
core/orphanparts.py), and retried blocks whose rollup rows repeat another block's (core/clusterddl.py
`SALT_COLUMN`). This run found both. Checks: every row a writer saw stored is stored once, both replicas
of each shard agree, every rollup equals the raw clicks; figures: the 319 answers the servers logged and
the parts set aside."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time

from core import queries
from core.clickhouse import ClickHouseError
from core.cluster import ClusterClickHouse
from core.migrate import migrate
from core.rows import ClickRow
from loadtests.clickhouse_cluster_faults import CLUSTER, OFFSET, PORTS, ROOT, ClusterNodes, replica_checks
from loadtests.common import Run
from loadtests.system import DATABASE
from loadtests.verdict import Verdict

WRITERS = 4
BLOCK_ROWS = 500
# A flap: after this many blocks went in since ZooKeeper came back (the tables take inserts again), stop
# it at a random moment of the next RANDOM_DELAY_S, for DOWN_S.
BLOCKS_BEFORE_FLAP = 6
RANDOM_DELAY_S = 0.3
DOWN_S = 1.0
# Bounds: no flap waits longer than this for the tables to take inserts again, no writer retries longer.
PROGRESS_WAIT_S = 90
WRITER_GIVE_UP_S = 300
# After the last block, a writer settles its replicas in doubt for at most this long.
SETTLE_WAIT_S = 45
DAY_MS = 1_764_201_600_000  # the rows' day (any: one partition)


def zookeeper_flaps(run: Run) -> Verdict:
    verdict = Verdict("zookeeper_flaps", run.mode)
    flaps = run.pick(12, 3)
    nodes = ClusterNodes()
    nodes.start()
    nodes.reset()
    url = nodes.url(DATABASE)
    alt = [f"127.0.0.1:{p}" for p in PORTS[1:]]
    admin = ClusterClickHouse(url, CLUSTER, alt_hosts=alt, insert_timeout_s=120)
    warnings = _CountedWarnings()
    logging.getLogger("core.cluster").addHandler(warnings)
    writers = _Writers(url, alt)
    try:
        migrate(admin, log=lambda _line: None)
        logged_before = _unknown_status_logged()
        writers.start()
        for _ in range(flaps):
            mark = writers.stored_count()
            deadline = time.monotonic() + PROGRESS_WAIT_S
            while (
                writers.stored_count() < mark + BLOCKS_BEFORE_FLAP * BLOCK_ROWS
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            time.sleep(random.random() * RANDOM_DELAY_S)
            nodes.zookeeper("stop")
            time.sleep(DOWN_S)
            nodes.zookeeper("start")
        stuck = writers.stop()
        verdict.check("every writer finished its last block", not stuck, f"writers still retrying: {stuck}")
        _checks(verdict, admin, nodes, writers.stored)
        verdict.figures["unknown_status_answers_logged"] = _unknown_status_logged() - logged_before
        verdict.figures["orphan_parts_set_aside"] = warnings.set_aside
        verdict.figures["flaps"] = flaps
    finally:
        writers.stop()  # (again: if a flap failed, the writers must not outlive the scenario)
        logging.getLogger("core.cluster").removeHandler(warnings)
        admin.close()
        nodes.stop()
    return verdict


def _checks(verdict: Verdict, admin: ClusterClickHouse, nodes: ClusterNodes, stored: list[str]) -> None:
    # Every replica caught up first: the reads below through the Distributed tables then see all parts.
    replica_checks(verdict, nodes.replica_totals())
    sql = f"SELECT count(), uniqExact(click_id) FROM {admin.database}.clicks"
    total, distinct = (int(v) for v in admin.execute(sql)[0])
    verdict.figures["clicks_stored_by_writers"] = len(stored)
    verdict.check(
        "every stored block's clicks are in ClickHouse once",
        total == distinct == len(set(stored)) == len(stored),
        f"writers saw {len(stored)} stored; count()={total}, distinct={distinct}",
    )
    totals = queries.rollup_totals(admin)
    verdict.figures["rollup_totals"] = {name: t[0] for name, t in totals.items()}
    verdict.check("rollups agree with the raw clicks", len(set(totals.values())) == 1, f"{totals}")


class _Writers:
    """WRITERS threads, each inserting blocks of new clicks and, after a failure, the same block again."""

    def __init__(self, url: str, alt: list[str]) -> None:
        self._url, self._alt = url, alt
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.stored: list[str] = []
        self._threads = [threading.Thread(target=self._write, args=(n,), daemon=True) for n in range(WRITERS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stored_count(self) -> int:
        with self._lock:
            return len(self.stored)

    def stop(self) -> list[str]:
        self._halt.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(WRITER_GIVE_UP_S)
        return [t.name for t in self._threads if t.is_alive()]

    def _write(self, n: int) -> None:
        backend = ClusterClickHouse(self._url, CLUSTER, alt_hosts=self._alt, insert_timeout_s=3)
        columns = ClickRow.columns()
        given_up_at = None
        try:
            while not self._halt.is_set():
                rows = [_click(f"w{n}-{os.urandom(6).hex()}", i) for i in range(BLOCK_ROWS)]
                block = [[getattr(row, c) for row in rows] for c in columns]
                while True:
                    try:
                        backend.insert("clicks", columns, block)
                        break
                    except ClickHouseError:
                        given_up_at = given_up_at or time.monotonic() + WRITER_GIVE_UP_S
                        if time.monotonic() > given_up_at:
                            return
                        time.sleep(0.5)  # the same rows again: each shard's block again, dropped if stored
                given_up_at = None
                with self._lock:
                    self.stored.extend(row.click_id for row in rows)
            # As an idle ingester does: finish what a failed insert left (replicas in doubt), bounded.
            deadline = time.monotonic() + SETTLE_WAIT_S
            while (backend.orphans.in_doubt or backend.orphans.detached) and time.monotonic() < deadline:
                with contextlib.suppress(ClickHouseError):
                    backend.settle_failed_inserts()
                time.sleep(1.0)
        finally:
            backend.close()


def _click(click_id: str, n: int) -> ClickRow:
    ts_ms = DAY_MS + n * 1000
    return ClickRow(
        click_id, ts_ms // 1000, ts_ms, "flap0001", "cr1", "m1", "shop.example", 0, 0, "", 1, "DE",
        "mobile", "", "", "", "", 7, "", "", -1, "",
    )  # fmt: skip


class _CountedWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.set_aside = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "set aside parts" in record.getMessage():
            self.set_aside += 1


def _unknown_status_logged() -> int:
    """ "Unknown status" answers in the private cluster's server error logs (cumulative)."""
    total = 0
    for node in range(1, len(PORTS) + 1):
        log = ROOT / ".clicktrail" / f"cluster-{OFFSET}" / f"ch{node}" / "log" / "err.log"
        if log.exists():
            total += sum(1 for line in log.open(errors="replace") if "Code: 319" in line)
    return total
