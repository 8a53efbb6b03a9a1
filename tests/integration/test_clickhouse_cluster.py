"""ClickHouse cluster mode on the local 2 shards x 2 replicas (scripts/cluster-clickhouse.sh; the session
fixture starts it): migrations run twice and finish a half-applied run, every query gives the one-node
answers, rows land on their shard, a retried block is stored once (also on the other replica), inserts
and queries fail over, the whole path from link to earnings runs on the cluster, and so do payouts."""

from __future__ import annotations

import re
import threading
import time
from itertools import chain
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from prometheus_client import CollectorRegistry

from core import queries
from core.clickid import ClickIds
from core.cluster import ClusterClickHouse, Replica
from core.clustercopy import CopyRefused, copy_to_cluster
from core.clusterddl import ENTRANCES, Planner, local_name, shard_index, state_table_sql
from core.clustermigrate import run_step
from core.keys import INGEST_GROUP, Keys
from core.migrate import STATE_TABLE, available, migrate
from core.rows import ClickRow
from core.streaminfo import StreamMetrics
from core.streams import ConsumerConfig, StreamConsumer
from redirector.ingest.process import stream_specs
from tests.conftest import CLUSTER_NAME, free_port
from tests.integration import test_end_to_end as e2e
from tests.integration import test_id_sets as id_sets
from tests.integration import test_ingest_crash as crash
from tests.integration import test_payouts as payout_tests
from tests.integration import test_schema as schema
from tests.integration.crashhelp import CRASH_TUNING, ingest_env
from tests.integration.test_ingest import HOUR_MS, assert_exact, fill, make_clicks

pytestmark = [pytest.mark.clickhouse, pytest.mark.cluster]
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def cluster(cluster_backend: ClusterClickHouse) -> ClusterClickHouse:
    migrate(cluster_backend, log=lambda _line: None)
    return cluster_backend


def replicas(cluster: ClusterClickHouse) -> list[Replica]:
    return list(chain.from_iterable(cluster.shards()))


def sync(cluster: ClusterClickHouse, table: str) -> None:
    for replica in replicas(cluster):
        cluster.execute_on(replica, f"SYSTEM SYNC REPLICA {cluster.database}.{local_name(table)}")


def test_id_sets_reach_every_shard(cluster: ClusterClickHouse) -> None:
    """A set sent as an external table goes from the node asked to both shards of order_events."""
    assert cluster.ships_id_sets
    id_sets.assert_id_sets_select_exactly(cluster, after_insert=lambda: sync(cluster, "order_events"))
    local = f"{cluster.database}.{local_name('order_events')}"
    held = [cluster.execute_on(shard[0], f"SELECT count() FROM {local}")[0][0] for shard in cluster.shards()]
    assert len(held) == 2 and all(held), held  # the ids found were read on both shards


def test_migrations_run_twice_and_every_node_knows(cluster: ClusterClickHouse) -> None:
    assert migrate(cluster, log=lambda _line: None) == []
    db = cluster.database
    for replica in replicas(cluster):
        versions = {row[0] for row in cluster.execute_on(replica, f"SELECT version FROM {db}.{STATE_TABLE}")}
        assert versions == {m.version for m in available()}
        tables = {row[0] for row in cluster.execute_on(replica, f"SHOW TABLES FROM {db}")}
        assert {
            "clicks",
            "clicks_local",
            "commissions_daily",
            "commissions_daily_local",
            *schema.ROLLUPS,
        } <= tables


def test_a_half_applied_run_is_finished(cluster_backend: ClusterClickHouse) -> None:
    """A run that died after the first statement of each migration: the next run completes them all."""
    db = cluster_backend.database
    cluster_backend.execute(f"CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {CLUSTER_NAME}")
    cluster_backend.execute(state_table_sql(db, CLUSTER_NAME, STATE_TABLE))
    migrations = available()
    planner = Planner(db, CLUSTER_NAME, [s for m in migrations for s in m.statements(db)])
    for migration in migrations[:3]:
        run_step(cluster_backend, planner.steps(migration.statements(db)[0])[0])
    assert len(migrate(cluster_backend, log=lambda _line: None)) == len(migrations)
    assert migrate(cluster_backend, log=lambda _line: None) == []
    schema.insert_clicks(cluster_backend, schema.SAMPLE)
    assert set(queries.rollup_totals(cluster_backend).values()) == {(6, 4, 1)}


def test_an_added_column_is_added_once_on_every_node(cluster: ClusterClickHouse) -> None:
    db = cluster.database
    statements = [
        f"CREATE TABLE IF NOT EXISTS {db}.probe (a String) ENGINE = MergeTree() ORDER BY a",
        f"ALTER TABLE {db}.probe ADD COLUMN b String DEFAULT 'x'",
    ]
    planner = Planner(db, CLUSTER_NAME, statements)
    for statement in [*statements, statements[1]]:  # the ALTER twice: the second run skips every node
        for step in planner.steps(statement):
            run_step(cluster, step)
    for replica in replicas(cluster):
        for table in ("probe", "probe_local"):
            rows = cluster.execute_on(
                replica,
                "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                {"db": db, "t": table},
            )
            assert [r[0] for r in rows] == ["a", "b"]


def test_queries_give_the_one_node_answers(cluster: ClusterClickHouse) -> None:
    schema.test_queries(cluster)


def test_the_variant_conversion_join_gives_the_one_node_answer(cluster: ClusterClickHouse) -> None:
    schema.test_variant_rollup_and_conversion(cluster)


def test_key_checks_and_links_give_the_one_node_answers(cluster: ClusterClickHouse) -> None:
    schema.test_existing_click_ids(cluster)
    schema.test_links_mirror(cluster)


def test_rows_land_on_the_shard_clickhouse_would_choose(cluster: ClusterClickHouse) -> None:
    schema.insert_clicks(cluster, schema.SAMPLE)
    sync(cluster, "clicks")
    db = cluster.database
    for shard, shard_replicas in enumerate(cluster.shards()):
        expected = {r["click_id"] for r in schema.SAMPLE if shard_index(r["click_id"], [1, 1]) == shard}
        for replica in shard_replicas:  # both replicas hold the shard's rows, and only those
            rows = cluster.execute_on(
                replica, f"SELECT click_id, halfMD5(toString(click_id)) % 2 FROM {db}.clicks_local"
            )
            assert {r[0] for r in rows} == expected
            assert {int(r[1]) for r in rows} <= {shard}


def test_a_retried_block_is_stored_once(cluster: ClusterClickHouse) -> None:
    """The same block again, on the same replica or on the other replica of its shard (a retry after a
    failover), is dropped by replicated deduplication, and so are the rollup blocks derived from it: each
    by its own deduplication, the clicks going in through their entrance (ENTRANCES)."""
    schema.insert_clicks(cluster, schema.SAMPLE)
    schema.insert_clicks(cluster, schema.SAMPLE)
    columns, entrance = ClickRow.columns(), local_name(ENTRANCES["clicks"])
    for shard, shard_replicas in enumerate(cluster.shards()):
        rows = [r for r in schema.SAMPLE if shard_index(r["click_id"], [1, 1]) == shard]
        block = [[r[c] for r in rows] for c in columns]
        sql = f"INSERT INTO {cluster.database}.{entrance} ({', '.join(columns)}) VALUES"
        cluster.execute_on(shard_replicas[-1], sql, block, columnar=True)
    assert queries.click_count(cluster) == 6
    assert set(queries.rollup_totals(cluster).values()) == {(6, 4, 1)}


def test_blocks_whose_rollup_rows_are_equal_are_all_counted(cluster: ClusterClickHouse) -> None:
    """One click per insert, each on the same link, day and shard: every rollup row of those inserts is
    the same, and a view's part is deduplicated by content. Without the views' block salt (SALT_COLUMN)
    the rollups counted one click of the four (found by a ZooKeeper stress run: 18,000 of 41,500)."""
    same_shard = [f"salt-{n:04d}" for n in range(200) if shard_index(f"salt-{n:04d}", [1, 1]) == 0][:4]
    for n, click_id in enumerate(same_shard):
        schema.insert_clicks(cluster, [schema.click_row(click_id, schema.DAY1_MS + n, "abc1234")])
    assert queries.click_count(cluster) == 4
    assert set(queries.rollup_totals(cluster).values()) == {(4, 4, 0)}
    schema.insert_clicks(cluster, [schema.click_row(same_shard[0], schema.DAY1_MS, "abc1234")])  # a retry
    assert set(queries.rollup_totals(cluster).values()) == {(4, 4, 0)}


def test_inserts_and_queries_fail_over(cluster: ClusterClickHouse, ch_cluster_settings) -> None:
    shards = cluster.shards()
    dead = [Replica(s, "127.0.0.1", free_port()) for s in range(len(shards))]
    cluster._shards = [[dead[s], *shards[s]] for s in range(len(shards))]  # first replicas down
    schema.insert_clicks(cluster, schema.SAMPLE)
    assert queries.click_count(cluster) == 6
    dead_url = f"clickhouse://default:@127.0.0.1:{free_port()}/{cluster.database}"
    other = ClusterClickHouse(dead_url, CLUSTER_NAME, alt_hosts=ch_cluster_settings.clickhouse_alt_hosts)
    try:
        assert queries.click_count(other) == 6
    finally:
        other.close()


def test_the_readme_queries_run_unchanged(cluster: ClusterClickHouse) -> None:
    schema.insert_clicks(cluster, schema.SAMPLE)
    block = re.search(r"## ClickHouse for analysts.*?```sql\n(.*?)```", README.read_text(), re.S)
    assert block
    statements = [s.strip() for s in block[1].split(";") if s.strip()]
    assert len(statements) >= 8
    for statement in statements:
        cluster.execute(statement.replace("clicktrail.", f"{cluster.database}."))


@pytest.mark.redis
def test_link_to_earnings_on_the_cluster(ch_cluster_settings, cluster_backend, redis_client) -> None:
    e2e.test_click_to_commission(ch_cluster_settings, cluster_backend, redis_client)


def test_a_single_node_moves_to_the_cluster(
    clickhouse, settings, ch_cluster_settings, cluster_backend
) -> None:
    """`migrate --to-cluster`: every row copied once, rollups rebuilt exactly, a second run copies nothing,
    and a partial copy is refused."""
    migrate(clickhouse, log=lambda _line: None)
    schema.insert_clicks(clickhouse, schema.SAMPLE)
    schema.test_links_mirror(clickhouse)
    source = "127.0.0.1:" + str(urlsplit(settings.clickhouse_url).port)
    copied = copy_to_cluster(clickhouse, source, cluster_backend, log=lambda _line: None)
    assert copied == {"clicks": 6, "links": 3, "order_events": 0, "commissions": 0, "payout_lines": 0}
    assert set(queries.rollup_totals(cluster_backend).values()) == {(6, 4, 1)}
    assert copy_to_cluster(clickhouse, source, cluster_backend, log=lambda _line: None)["clicks"] == 0
    assert queries.click_count(cluster_backend) == 6
    schema.insert_clicks(clickhouse, [schema.click_row("id-7", schema.DAY1_MS, "abc1234")])
    with pytest.raises(CopyRefused, match="clicks holds 6 of 7 rows"):
        copy_to_cluster(clickhouse, source, cluster_backend, log=lambda _line: None)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("point", ["before_insert", "after_insert"])
def test_an_ingester_killed_around_its_insert_stores_each_click_once(
    point, cluster, ch_cluster_settings, redis_client
) -> None:
    """The one-node crash test on the cluster: SIGKILL before or after the insert, then `ingest --once`
    takes the pending entries back; exactly N clicks, exact rollups and unique flags."""
    env = ingest_env(ch_cluster_settings, CRASH_TUNING)
    crash.test_sigkill_at_each_point(point, env, redis_client, cluster, ch_cluster_settings)


def test_a_read_on_a_lost_connection_is_run_again_on_a_live_node(cluster: ClusterClickHouse) -> None:
    schema.insert_clicks(cluster, schema.SAMPLE)
    assert queries.click_count(cluster) == 6
    cluster._entry.connection.socket.close()  # the entry node went away under an open connection
    assert queries.click_count(cluster) == 6


def test_a_payout_batch_reads_the_lines_it_just_linked(cluster: ClusterClickHouse) -> None:
    """The batch links its lines with one INSERT ... SELECT through the `Distributed` table and reads them
    back at once (`batch_lines`): inserted asynchronously, that read found none of them every time."""
    columns = ("merchant_id", "order_id", "entry_id", "run_id", "creator_id", "currency", "status", "kind",
               "amount_minor", "orders", "booked_ms")  # fmt: skip
    merchants = [f"m{n}" for n in range(4)]  # payout lines are sharded by merchant: both shards take some
    rows = [
        (m, f"O-{n}", "e1", "r1", ("alice", "bob")[n % 2], "EUR", "approved", "accrual", 100 + n, 1, 1_000)
        for m in merchants
        for n in range(20)  # orders on both shards of the ledger
    ]
    cluster.insert("commissions", columns, [list(c) for c in zip(*rows, strict=True)])
    for merchant in merchants:
        totals = queries.payable_totals(cluster, merchant, 2_000, "b1")
        queries.link_payable(cluster, merchant, 2_000, "b1", 0, 3_000, attributed_by=False)
        linked = queries.batch_lines(cluster, merchant, "b1")
        assert sorted(linked.values()) == sorted((n, a) for _, _, a, n in totals)
        assert len(linked) == 2 and sum(n for n, _ in linked.values()) == 20


def test_payouts_on_the_cluster(ch_cluster_settings, cluster: ClusterClickHouse) -> None:
    """Batches, confirm, fail, statements and a reversal netted into the next batch: the one-node test on
    the cluster (the batch links ledger rows with GLOBAL IN, inserts into `payout_lines` synchronously)."""
    payout_tests.test_batches_net_reversals_and_pay_failed_rows_again(ch_cluster_settings, cluster)


def test_payouts_of_a_moved_credit_on_the_cluster(ch_cluster_settings, cluster: ClusterClickHouse) -> None:
    """A paid order whose credit moves to another creator: the payout identity (order, entry, run,
    creator, currency) in the GLOBAL NOT IN subqueries of the `Distributed` tables."""
    payout_tests.moved_credit_after_payout(ch_cluster_settings, cluster, "creator")


ROLLUPS = ("clicks_daily", "creator_clicks_daily", "merchant_clicks_daily", "clicks_daily_dims")


def test_a_block_that_failed_part_way_is_finished_in_every_rollup(
    cluster: ClusterClickHouse, ch_cluster_settings, redis_client
) -> None:
    """ZooKeeper lost in the middle of an insert, made deterministic: a view that throws on one click
    stands where the fault strikes, after the clicks and two rollups stored their part of the block and
    before the three others (ClickHouse runs the views of a table in the order of their names). The
    ingester's next run, once the fault is gone, must leave every rollup exact; before the clicks had an
    entrance, the retried block was a duplicate whose views ClickHouse skipped, and the key check found
    its clicks stored: three rollups stayed short for good."""
    db, on = cluster.database, f"ON CLUSTER {CLUSTER_NAME}"
    keys = Keys(ch_cluster_settings.redis_prefix)
    clicks = make_clicks(
        ClickIds(ch_cluster_settings.secret_bytes), 2_000, int(time.time() * 1000) - HOUR_MS, 1
    )
    fill(redis_client, keys, clicks)
    entrance = cluster.execute(
        f"SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'clicks_in_local'"
    )
    feeder = "clicks_in_local" if int(entrance[0][0]) else "clicks_local"
    cluster.execute(f"CREATE TABLE {db}.fault_local {on} (x UInt8) ENGINE = Null()")
    cluster.execute(
        f"CREATE MATERIALIZED VIEW {db}.clicks_inz_fault_mv {on} TO {db}.fault_local AS "
        f"SELECT throwIf(click_id = '{clicks[1_500].click_id}') AS x FROM {db}.{feeder}"
    )
    spec = stream_specs(ch_cluster_settings)[0]
    client = redis.Redis.from_url(ch_cluster_settings.redis_url)
    config = ConsumerConfig(stream=spec.stream, dead_stream=spec.dead_stream, group=INGEST_GROUP,
                            consumer="c1", batch_size=1_000, flush_interval_ms=10)  # fmt: skip

    def run_once() -> bool:
        consumer = StreamConsumer(client, cluster, spec.make_handler(client), config,
                                  StreamMetrics(CollectorRegistry()))  # fmt: skip
        consumer.ensure_group()
        return consumer.run(threading.Event(), once=True)

    try:
        # The block holding that click fails part-way on each replica. (Before the entrance, the other
        # replica took the same block as a duplicate and skipped its views: no error at all.)
        run_once()
        cluster.execute(f"DROP TABLE {db}.clicks_inz_fault_mv {on}")
        assert run_once()
    finally:
        client.close()
    for table in ("clicks", "clicks_variants_daily", *ROLLUPS):
        sync(cluster, table)
    assert_exact(cluster, clicks)
