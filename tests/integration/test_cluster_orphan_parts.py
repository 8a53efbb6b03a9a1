"""A replica that lost ZooKeeper while committing a part answers "Unknown status" (code 319) and keeps
the part, active, whether or not ZooKeeper recorded it; the client sends the block again, so that replica
holds its rows twice until ClickHouse 18.16 checks the part (at most once, 5 minutes later). The cluster
backend sets such parts aside (core/orphanparts.py) after the shard next takes an insert, by restarting
the table on that replica, and attaches a table again that a failed restart left detached. The state is
made deterministic here: a part's entry is deleted from the replica's parts list in ZooKeeper, which
leaves exactly what a failed commit leaves (an active part ZooKeeper does not list)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from clickhouse_driver import errors
from redis.asyncio import Redis

from attribution.attributor import Attributor
from attribution.payoutbook import PayoutBook
from core import queries
from core.clickhouse import ClickHouseError, PartsInDoubt
from core.clickid import ClickIds
from core.cluster import ClusterClickHouse, Replica
from core.clusterddl import REPLICA_SETTINGS
from core.keys import Keys
from core.migrate import migrate
from core.orphanparts import WAIT_AT_MOST_S
from tests.conftest import CLUSTER_ALT_HOSTS, CLUSTER_NAME, CLUSTER_URL, CLUSTER_ZOOKEEPER, free_port
from tests.integration import test_schema as schema
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders, insert_clicks
from tests.integration.test_payouts import balances

pytestmark = [pytest.mark.clickhouse, pytest.mark.cluster]
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"


@pytest.fixture
def cluster(cluster_backend: ClusterClickHouse) -> ClusterClickHouse:
    migrate(cluster_backend, log=lambda _line: None)
    return cluster_backend


def make_table(
    cluster: ClusterClickHouse, replica: Replica, table: str, blocks: list[int], settings: str = ""
) -> list[str]:
    """A replicated table on `replica` alone, one part per block of `blocks` rows; returns the parts."""
    db = cluster.database
    cluster.execute_on(
        replica,
        f"CREATE TABLE {db}.{table} (x UInt64) ENGINE = "
        f"ReplicatedMergeTree('/clickhouse/tables/orphans/{db}/{table}', 'r') ORDER BY x {settings}",
    )
    for n, rows in enumerate(blocks):
        sql = f"INSERT INTO {db}.{table} SELECT {n * 1000} + number FROM numbers({rows})"
        cluster.execute_on(replica, sql)
    return [r[0] for r in cluster.execute_on(replica, active_parts_sql(cluster, table))]


def active_parts_sql(cluster: ClusterClickHouse, table: str) -> str:
    return (
        f"SELECT name FROM system.parts WHERE database = '{cluster.database}' AND table = '{table}' "
        "AND active ORDER BY name"
    )


def zookeeper_delete(path: str) -> None:
    subprocess.run(
        [ZKCLI, "-server", CLUSTER_ZOOKEEPER, "deleteall", path], check=True, capture_output=True, timeout=60
    )


def unlist(cluster: ClusterClickHouse, table: str, part: str) -> None:
    """What a commit that lost ZooKeeper leaves: the part active on the replica, not in its list."""
    zookeeper_delete(f"/clickhouse/tables/orphans/{cluster.database}/{table}/replicas/r/parts/{part}")


def count(cluster: ClusterClickHouse, replica: Replica, table: str) -> int:
    return int(cluster.execute_on(replica, f"SELECT count() FROM {cluster.database}.{table}")[0][0])


def test_a_part_zookeeper_does_not_list_is_set_aside(cluster: ClusterClickHouse) -> None:
    replica = cluster.shards()[0][0]
    parts = make_table(cluster, replica, "orphans_one", [10, 3, 4])
    unlist(cluster, "orphans_one", parts[1])
    assert count(cluster, replica, "orphans_one") == 17

    assert cluster.orphans.drop(replica) == {"orphans_one": [parts[1]]}

    assert count(cluster, replica, "orphans_one") == 14
    assert [r[0] for r in cluster.execute_on(replica, active_parts_sql(cluster, "orphans_one"))] == [
        parts[0],
        parts[2],
    ]
    # 18.16 has no system.detached_parts: the servers are local, so their directories are read.
    data_path = cluster.execute_on(
        replica,
        f"SELECT data_path FROM system.tables WHERE database = '{cluster.database}' AND name = 'orphans_one'",
    )[0][0]
    assert [p.name for p in (Path(data_path) / "detached").iterdir()] == [f"ignored_{parts[1]}"]
    # The restarted table takes inserts again; the clicks' tables, all listed, were left as they were.
    cluster.execute_on(replica, f"INSERT INTO {cluster.database}.orphans_one SELECT 99999")
    assert count(cluster, replica, "orphans_one") == 15
    assert cluster.orphans.drop(replica) == {}


def test_unlisted_parts_holding_too_many_rows_are_left_to_clickhouse(cluster: ClusterClickHouse) -> None:
    """ClickHouse refuses to attach a table whose unknown parts hold half its rows, by default: RESTART
    REPLICA would leave it detached. Such a table (made before REPLICA_SETTINGS) is left alone, and its
    replica waits for a later look."""
    replica = cluster.shards()[1][0]
    parts = make_table(cluster, replica, "orphans_many", [3, 10])
    unlist(cluster, "orphans_many", parts[1])
    assert cluster.orphans.drop(replica) == {}
    assert count(cluster, replica, "orphans_many") == 13
    assert cluster.orphans.waiting[replica] == ["orphans_many"]
    # A reader that takes rows as the truth waits meanwhile (the attributor's run fails, to be retried).
    with pytest.raises(ClickHouseError, match="unknown parts left in orphans_many"):
        cluster.settle_unknown_parts()
    # A replica whose table waits stays in doubt and is looked at again; after WAIT_AT_MOST_S, no more.
    cluster.orphans.in_doubt[replica] = time.time()
    cluster.orphans.shard_took_insert(replica.shard)
    assert replica in cluster.orphans.in_doubt
    cluster.orphans.in_doubt[replica] = time.time() - WAIT_AT_MOST_S - 1
    cluster.orphans._next_look.clear()  # (the look of RETRY_S ago would make it wait)
    cluster.orphans.shard_took_insert(replica.shard)
    assert replica not in cluster.orphans.in_doubt
    assert count(cluster, replica, "orphans_many") == 13


def test_a_table_made_by_the_planner_is_restarted_whatever_share_its_unlisted_parts_hold(
    cluster: ClusterClickHouse,
) -> None:
    """A young table cut by ZooKeeper: the part the insert left unrecorded holds most of its rows (a
    smoke run's clicks_local had its very first part so). With REPLICA_SETTINGS, 18.16 attaches it."""
    replica = cluster.shards()[1][0]
    parts = make_table(cluster, replica, "orphans_most", [3, 10], f"SETTINGS {REPLICA_SETTINGS}")
    unlist(cluster, "orphans_most", parts[1])
    assert cluster.orphans.drop(replica) == {"orphans_most": [parts[1]]}
    assert count(cluster, replica, "orphans_most") == 3
    assert cluster.orphans.waiting[replica] == []
    cluster.execute_on(replica, f"INSERT INTO {cluster.database}.orphans_most SELECT 99999")
    assert count(cluster, replica, "orphans_most") == 4


def test_an_unknown_status_answer_has_its_replica_checked_after_the_next_insert(
    cluster: ClusterClickHouse,
) -> None:
    """The server's 319 answer is the one thing simulated (ZooKeeper cannot be made to drop a commit on
    cue): the first insert on shard 1's first replica raises it, the block goes to the other replica, and
    that success has the first replica's unknown part set aside."""
    first = cluster.shards()[0][0]
    parts = make_table(cluster, first, "orphans_doubt", [10, 2])
    unlist(cluster, "orphans_doubt", parts[1])
    real_execute_on = cluster.execute_on
    answered: list[str] = []

    def execute_on(replica: Replica, sql: str, params=None, columnar: bool = False):
        if sql.startswith("INSERT") and replica == first and not answered:
            answered.append(replica.address)
            server = errors.ServerException("DB::Exception: Unknown status, client must retry.", code=319)
            raise ClickHouseError(str(server)) from server
        return real_execute_on(replica, sql, params, columnar=columnar)

    cluster.execute_on = execute_on  # type: ignore[method-assign]
    schema.insert_clicks(cluster, schema.SAMPLE)
    assert answered == [first.address]
    assert count(cluster, first, "orphans_doubt") == 10
    assert not cluster.orphans.in_doubt
    assert queries.click_count(cluster) == len(schema.SAMPLE)


def test_a_table_a_failed_restart_left_detached_is_attached_again(cluster: ClusterClickHouse) -> None:
    """A restart is a detach and an attach; ZooKeeper lost in between leaves the table detached on that
    replica (a zookeeper_flaps run saw clicks_local gone from a node). The detach is done by hand here:
    the next insert on the shard attaches it again."""
    first = cluster.shards()[0][0]
    make_table(cluster, first, "orphans_detached", [5])
    cluster.execute_on(first, f"DETACH TABLE {cluster.database}.orphans_detached")
    cluster.orphans.detached.add((first, "orphans_detached"))
    schema.insert_clicks(cluster, schema.SAMPLE)
    assert count(cluster, first, "orphans_detached") == 5
    assert not cluster.orphans.detached


def test_a_failed_block_of_an_ingester_table_is_kept_and_sent_again(cluster: ClusterClickHouse) -> None:
    """Every replica of the shard answers 319 to a block of `links` (an ingester table, no entrance): the
    block is kept and sent again, unchanged, by the settle that precedes the ingester's key check. The
    key check alone could find its rows on the replica that kept them and skip them, and that part is
    then set aside: the rows lost."""
    from core.rows import LinkRow

    real_execute_on = cluster.execute_on
    refused: list[str] = []

    def execute_on(replica: Replica, sql: str, params=None, columnar: bool = False):
        if sql.startswith("INSERT") and "links" in sql and len(refused) < len(cluster.shards()[0]):
            refused.append(replica.address)
            server = errors.ServerException("DB::Exception: Unknown status, client must retry.", code=319)
            raise ClickHouseError(str(server)) from server
        return real_execute_on(replica, sql, params, columnar=columnar)

    cluster.execute_on = execute_on  # type: ignore[method-assign]
    row = LinkRow("kept001", "https://shop.example/p", "cr1", "m1", "shop.example", 1, 1_000, 0, 1_000, "")
    columns = LinkRow.columns()
    with pytest.raises(ClickHouseError, match="no replica"):
        cluster.insert("links", columns, [[getattr(row, c)] for c in columns])
    assert len(refused) == len(cluster.shards()[0])
    cluster.settle_failed_inserts()
    stored = cluster.execute(f"SELECT count() FROM {cluster.database}.links WHERE code = 'kept001'")
    assert stored == [(1,)]


def test_every_replicated_table_the_migrations_made_may_be_restarted_so(cluster: ClusterClickHouse) -> None:
    for replica in (shard[0] for shard in cluster.shards()):
        engines = cluster.execute_on(
            replica,
            "SELECT name, engine_full FROM system.tables "
            "WHERE database = %(db)s AND engine LIKE 'Replicated%%'",
            {"db": cluster.database},
        )
        assert len(engines) >= 10, engines
        assert [n for n, e in engines if REPLICA_SETTINGS not in e] == [], engines


def test_a_reader_sets_aside_what_no_insert_of_its_own_left_and_skips_a_replica_it_cannot_reach(
    cluster: ClusterClickHouse,
) -> None:
    """`settle_unknown_parts` looks at every replica, not only those this process saw answer 319 (a
    restarted attributor remembers none); an unreachable replica serves no reads and is skipped."""
    first = cluster.shards()[0][0]
    parts = make_table(cluster, first, "orphans_sweep", [10, 2], f"SETTINGS {REPLICA_SETTINGS}")
    unlist(cluster, "orphans_sweep", parts[1])
    assert not cluster.orphans.in_doubt
    dead = Replica(0, "127.0.0.1", free_port())
    cluster.shards()[0].append(dead)
    try:
        cluster.settle_unknown_parts()
    finally:
        cluster.shards()[0].remove(dead)
    assert count(cluster, first, "orphans_sweep") == 10
    cluster.settle_unknown_parts()  # nothing left: no error


def test_a_table_another_process_left_detached_is_attached_by_the_sweep(cluster: ClusterClickHouse) -> None:
    """A restart cut between its detach and its attach leaves the table detached on that replica; the
    process that noted it may be gone. A reader's sweep finds it by its partner, which has it."""
    first = cluster.shards()[0][0]
    db = cluster.database
    cluster.execute_on(first, f"DETACH TABLE {db}.commissions_local")
    fresh = fresh_backend(cluster)
    try:
        fresh.settle_unknown_parts()
    finally:
        fresh.close()
    listed = cluster.execute_on(
        first, f"SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'commissions_local'"
    )
    assert listed == [(1,)]


def test_a_replica_only_this_process_cannot_reach_is_in_doubt(cluster: ClusterClickHouse) -> None:
    """Reads go through the node queries are sent to: a replica that node reaches may serve them, so a
    sweep that cannot look at it (a partition between this process and it) refuses rather than skips."""
    first = cluster.shards()[0][0]
    real_execute_on = cluster.execute_on

    def execute_on(replica: Replica, sql: str, params=None, columnar: bool = False):
        if replica == first:
            lost = errors.NetworkError("Code: 210. Connection refused (127.0.0.1:9101)")
            raise ClickHouseError(str(lost)) from lost
        return real_execute_on(replica, sql, params, columnar=columnar)

    cluster.execute_on = execute_on  # type: ignore[method-assign]
    try:
        with pytest.raises(PartsInDoubt, match=first.address):
            cluster.settle_unknown_parts()
    finally:
        cluster.execute_on = real_execute_on  # type: ignore[method-assign]
    cluster.settle_unknown_parts()


def test_a_table_whose_merged_parts_zookeeper_lost_is_not_restarted(cluster: ClusterClickHouse) -> None:
    """A restart sets aside every part ZooKeeper does not list. When it lacks a merged part too (its
    state was lost: restored from a snapshot), restarting for a new unlisted part would take the table
    back in time: the sweep refuses, and every row stays."""
    replica = cluster.shards()[1][0]
    db = cluster.database
    make_table(cluster, replica, "orphans_lost", [100, 100, 100], f"SETTINGS {REPLICA_SETTINGS}")
    cluster.execute_on(replica, f"OPTIMIZE TABLE {db}.orphans_lost FINAL")
    cluster.execute_on(replica, f"INSERT INTO {db}.orphans_lost SELECT 9000 + number FROM numbers(5)")
    parts = [r[0] for r in cluster.execute_on(replica, active_parts_sql(cluster, "orphans_lost"))]
    assert len(parts) == 2 and parts[0].endswith("_1"), parts  # the merged part and the new one
    for part in parts:
        unlist(cluster, "orphans_lost", part)
    with pytest.raises(PartsInDoubt, match="orphans_lost"):
        cluster.settle_unknown_parts()
    assert count(cluster, replica, "orphans_lost") == 305


class OrphanThenRefuse:
    """An "Unknown status" commit, made so: the first insert into `table` is stored on the replica it
    goes to, its entry and its block's hash deleted from ZooKeeper (and the partner's fetches stopped, as
    if ZooKeeper's log never had it), and answered with 319; its partner answers 319 too, so the
    insert fails. Later inserts go through."""

    def __init__(self, cluster: ClusterClickHouse, table: str, shard: int | None = None) -> None:
        self.cluster, self.table = cluster, table
        self.orphaned: list[tuple[Replica, str]] = []
        self._real = cluster.execute_on
        self._shard = shard  # the shard struck (None: the first insert's); the others' inserts go in
        self._refused: set[Replica] = set()
        self._replicas = [r for shard in cluster.shards() for r in shard]

    def __enter__(self) -> OrphanThenRefuse:
        for replica in self._replicas:
            self._real(replica, f"SYSTEM STOP FETCHES {self.cluster.database}.{self.table}")
        self.cluster.execute_on = self._execute_on  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc) -> None:
        self.cluster.execute_on = self._real  # type: ignore[method-assign]

    def restore_fetches(self) -> None:
        for replica in self._replicas:
            self._real(replica, f"SYSTEM START FETCHES {self.cluster.database}.{self.table}")

    def _execute_on(self, replica: Replica, sql: str, params=None, columnar: bool = False):
        db = self.cluster.database
        if not sql.startswith(f"INSERT INTO {db}.{self.table} ") or self._shard not in (None, replica.shard):
            return self._real(replica, sql, params, columnar=columnar)
        if not self.orphaned:
            self._shard = replica.shard
            parts_sql = active_parts_sql(self.cluster, self.table)
            before = {r[0] for r in self._real(replica, parts_sql)}
            self._real(replica, sql, params, columnar=columnar)
            (part,) = {r[0] for r in self._real(replica, parts_sql)} - before
            zookeeper_path, name = self._real(
                replica,
                "SELECT zookeeper_path, replica_name FROM system.replicas "
                "WHERE database = %(db)s AND table = %(t)s",
                {"db": db, "t": self.table},
            )[0]
            # Neither its place in the list nor its block's hash: the same block sent again is stored.
            block = self._real(
                replica,
                "SELECT name FROM system.zookeeper WHERE path = %(p)s AND value = %(part)s",
                {"p": f"{zookeeper_path}/blocks", "part": part},
            )
            assert len(block) == 1, block
            paths = [f"{zookeeper_path}/replicas/{name}/parts/{part}"]
            paths += [f"{zookeeper_path}/blocks/{b[0]}" for b in block]
            for path in paths:
                zookeeper_delete(path)
            self.orphaned.append((replica, part))
        elif replica in self._refused:  # the failed insert is over: what comes later goes through
            return self._real(replica, sql, params, columnar=columnar)
        self._refused.add(replica)
        server = errors.ServerException("DB::Exception: Unknown status, client must retry.", code=319)
        raise ClickHouseError(str(server)) from server


HOUR_MS, T0_MS, ORDERS = 3_600_000, 1_793_491_200_000, 40  # 2026-11-01


async def book_orders(settings, cluster: ClusterClickHouse, r: Redis, **merchant) -> list[str]:
    """ORDERS orders of 1,000 minor units, each with its own click of alice's, stored and ingested."""
    ids = ClickIds(settings.secret_bytes)
    keys = Keys(settings.redis_prefix)
    clicks = [ids.new(T0_MS + n) for n in range(ORDERS)]
    rows = [(c, T0_MS + n, "alice", "m1", "shop.m1.example", 0, 0) for n, c in enumerate(clicks)]
    insert_clicks(cluster, rows)
    await add_merchant(r, keys, "m1", ["shop.m1.example"], T0_MS - 86_400_000, **merchant)
    for n, click_id in enumerate(clicks):
        at = T0_MS + HOUR_MS + n
        await deliver(r, keys, "m1", f"w{n}", "order.created", f"O-{n}", click_id, at, [("S", "", 1000, 1)])
    await asyncio.to_thread(ingest_orders, settings.redis_url, keys, cluster)
    return clicks


def fresh_backend(of) -> ClusterClickHouse:
    """Another process's backend (of these settings, or of the same database as this backend): it knows
    nothing of the answers the test's backend had."""
    if isinstance(of, ClusterClickHouse):
        url = CLUSTER_URL.rsplit("/", 1)[0] + "/" + of.database
        return ClusterClickHouse(url, CLUSTER_NAME, alt_hosts=CLUSTER_ALT_HOSTS.split(","))
    return ClusterClickHouse(of.clickhouse_url, CLUSTER_NAME, alt_hosts=of.clickhouse_alt_hosts)


@contextlib.contextmanager
def lost_commit(cluster: ClusterClickHouse, settings, shard: int | None = None):
    """The fault (OrphanThenRefuse on the ledger's table, not yet entered) and another process's backend
    to retry with; both undone at the end."""
    fault = OrphanThenRefuse(cluster, "commissions_local", shard=shard)
    fresh = fresh_backend(settings)
    try:
        yield fault, fresh
    finally:
        fresh.close()
        fault.restore_fetches()


def set_aside(fault: OrphanThenRefuse, backend: ClusterClickHouse) -> None:
    """What ClickHouse's own check would do later: set aside the part ZooKeeper does not list."""
    replica, _ = fault.orphaned[0]
    backend.orphans.drop(replica)


def accruals(cluster: ClusterClickHouse) -> dict[str, int]:
    rows = cluster.execute(
        f"SELECT order_id, sum(amount_minor) FROM {cluster.database}.commissions "
        "WHERE kind = 'accrual' GROUP BY order_id"
    )
    return {r[0]: int(r[1]) for r in rows}


@pytest.mark.redis
def test_a_ledger_part_an_unknown_status_left_is_set_aside_before_the_next_run_reads(
    cluster: ClusterClickHouse, ch_cluster_settings
) -> None:
    """The attributor's commissions insert answers 319 on both replicas of a shard, the first having kept
    the part though ZooKeeper never recorded it; the run fails. The next run is another process, which
    knows nothing of that answer: it must not read those rows as booked. Read so, it books only the
    other shard's orders, and once the part is set aside (ClickHouse's own check, 5 minutes later) the
    ledger lacks the first shard's orders, whose events were announced for rows that do not exist."""
    settings = ch_cluster_settings
    keys, ids = Keys(settings.redis_prefix), ClickIds(settings.secret_bytes)
    now_ms = T0_MS + 2 * HOUR_MS

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        await book_orders(settings, cluster, r)
        try:
            with lost_commit(cluster, settings) as (fault, fresh):
                with fault, pytest.raises(ClickHouseError, match="no replica of shard"):
                    await Attributor(r, keys, cluster, ids).run_once(now_ms=now_ms)
                assert len(fault.orphaned) == 1
                await r.delete(keys.attribution_lock)  # the failed run's hold has passed
                summary = await Attributor(r, keys, fresh, ids).run_once(now_ms=now_ms)
                assert summary.outcomes["credited"] == ORDERS
                assert summary.events == ORDERS  # each order's accrual announced once, by this run
                set_aside(fault, fresh)
                assert accruals(cluster) == {f"O-{n}": 80 for n in range(ORDERS)}
                assert (await Attributor(r, keys, fresh, ids).run_once(now_ms=now_ms)).rows == 0
        finally:
            await r.aclose()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_payout_transfer_an_unknown_status_left_is_written_by_the_next_confirm(
    cluster: ClusterClickHouse, ch_cluster_settings
) -> None:
    """Confirming a payout writes its transfer rows (in_payout to paid) into the ledger, after reading
    which of them are stored. Their insert answers 319, the part kept unrecorded; the confirm fails. Its
    retry, from another process, must write them: read as stored, they would never be, and the payout
    would stay in_payout in the ledger once the part is set aside, while its record says paid."""
    settings = ch_cluster_settings
    keys, ids = Keys(settings.redis_prefix), ClickIds(settings.secret_bytes)

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        await book_orders(settings, cluster, r, lock_days=0)
        await Attributor(r, keys, cluster, ids).run_once(now_ms=T0_MS + 2 * HOUR_MS)
        batch, _ = await PayoutBook(r, keys, lambda: cluster).create_batch(
            "m1", T0_MS + 2 * HOUR_MS + 1, 0, T0_MS + 3 * HOUR_MS
        )
        (payout,) = batch.planned
        assert payout.amount_minor == ORDERS * 80
        try:
            with lost_commit(cluster, settings) as (fault, fresh):
                with fault, pytest.raises(ClickHouseError, match="no replica of shard"):
                    await PayoutBook(r, keys, lambda: cluster).confirm(payout.payout_id, T0_MS + 4 * HOUR_MS)
                assert len(fault.orphaned) == 1
                await r.delete(keys.attribution_lock)  # the failed write's hold has passed
                confirmed = await PayoutBook(r, keys, lambda: fresh).confirm(
                    payout.payout_id, T0_MS + 4 * HOUR_MS
                )
                assert confirmed.status == "paid"
                set_aside(fault, fresh)
                assert balances(cluster) == {("alice", "EUR", "paid"): ORDERS * 80}
        finally:
            await r.aclose()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_payout_batch_plans_no_row_an_unknown_status_left(
    cluster: ClusterClickHouse, ch_cluster_settings
) -> None:
    """The attributor's insert of approved rows answers 319, the part kept unrecorded on one shard. A
    payout batch asked for next (another process: nothing remembers the answer) must plan only the rows
    that are stored: planned from the part too, it moves more to `in_payout` than was ever approved, and
    once the part is set aside the creator's approved balance is negative."""
    settings = ch_cluster_settings
    keys, ids = Keys(settings.redis_prefix), ClickIds(settings.secret_bytes)

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        await book_orders(settings, cluster, r, lock_days=0)
        try:
            # Shard 1's rows are stored, shard 2's kept by a replica ZooKeeper does not know.
            with lost_commit(cluster, settings, shard=1) as (fault, fresh):
                with fault, pytest.raises(ClickHouseError, match="no replica of shard 2"):
                    await Attributor(r, keys, cluster, ids).run_once(now_ms=T0_MS + 2 * HOUR_MS)
                await r.delete(keys.attribution_lock)  # the failed run's hold has passed
                batch, _ = await PayoutBook(r, keys, lambda: fresh).create_batch(
                    "m1", T0_MS + 2 * HOUR_MS + 1, 0, T0_MS + 3 * HOUR_MS
                )
                set_aside(fault, fresh)
                planned = sum(p.amount_minor for p in batch.planned)
                assert 0 < planned < ORDERS * 80  # the other shard's orders only
                assert balances(cluster) == {("alice", "EUR", "in_payout"): planned}
        finally:
            await r.aclose()

    asyncio.run(scenario())
