"""A replica that lost ZooKeeper while committing a part answers "Unknown status" (code 319) and keeps
the part, active, whether or not ZooKeeper recorded it; the client sends the block again, so that replica
holds its rows twice until ClickHouse 18.16 checks the part (at most once, 5 minutes later). The cluster
backend sets such parts aside (core/orphanparts.py) after the shard next takes an insert, by restarting
the table on that replica, and attaches a table again that a failed restart left detached. The state is
made deterministic here: a part's entry is deleted from the replica's parts list in ZooKeeper, which
leaves exactly what a failed commit leaves (an active part ZooKeeper does not list)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from clickhouse_driver import errors

from core import queries
from core.clickhouse import ClickHouseError
from core.cluster import ClusterClickHouse, Replica
from core.clusterddl import REPLICA_SETTINGS
from core.migrate import migrate
from core.orphanparts import WAIT_AT_MOST_S
from tests.conftest import CLUSTER_ZOOKEEPER
from tests.integration import test_schema as schema

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


def unlist(cluster: ClusterClickHouse, table: str, part: str) -> None:
    """What a commit that lost ZooKeeper leaves: the part active on the replica, not in its list."""
    path = f"/clickhouse/tables/orphans/{cluster.database}/{table}/replicas/r/parts/{part}"
    subprocess.run(
        [ZKCLI, "-server", CLUSTER_ZOOKEEPER, "deleteall", path], check=True, capture_output=True, timeout=60
    )


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
