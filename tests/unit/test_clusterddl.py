"""The cluster rewrite of migration statements (core/clusterddl.py): each known shape, each refusal, the
sharding keys, and the Python shard function that must agree with ClickHouse's."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clusterddl import REPLICA_SETTINGS, SHARD_KEYS, Planner, UnknownShape, shard_hash, shard_index
from core.migrate import available

DB, CL = "d", "c"
ZK = "'/clickhouse/tables/{shard}/d/%s', '{replica}'"
SETTING = "SETTINGS replicated_max_ratio_of_wrong_parts = 1"  # every replicated table (REPLICA_SETTINGS)

BASE = [
    "CREATE TABLE IF NOT EXISTS d.clicks (click_id String, ts DateTime, n UInt8) "
    "ENGINE = MergeTree() PARTITION BY toYYYYMM(ts) ORDER BY (toDate(ts), click_id)",
    "CREATE TABLE IF NOT EXISTS d.daily (day Date, n UInt64) ENGINE = SummingMergeTree() ORDER BY day",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS d.daily_mv TO d.daily AS "
    "SELECT toDate(ts) AS day, count() AS n FROM d.clicks GROUP BY day",
    "CREATE TABLE IF NOT EXISTS d.links (code String, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY code",
    "CREATE TABLE IF NOT EXISTS d.payouts (creator_id String, amount Int64, s String DEFAULT 'a,b') "
    "ENGINE = MergeTree() ORDER BY (creator_id, amount)",
]


def norm(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def plan(statement: str, extra: tuple[str, ...] = ()) -> list[tuple[str, str, str, str]]:
    planner = Planner(DB, CL, [*BASE, *extra, statement])
    return [(s.scope, norm(s.sql), s.table, s.column) for s in planner.steps(statement)]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            BASE[0],
            [
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.clicks_local ON CLUSTER c (click_id String, ts DateTime, "
                    f"n UInt8) ENGINE = ReplicatedMergeTree({ZK % 'clicks_local'}) PARTITION BY toYYYYMM(ts) "
                    f"ORDER BY (toDate(ts), click_id) {SETTING}",
                    "",
                    "",
                ),
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.clicks ON CLUSTER c AS d.clicks_local "
                    "ENGINE = Distributed(c, d, clicks_local, halfMD5(toString(click_id)))",
                    "",
                    "",
                ),
                # clicks has an entrance: a Null table per node whose views write clicks_local and the
                # rollups, each deduplicated on its own (ENTRANCES)
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.clicks_in_local ON CLUSTER c AS d.clicks_local "
                    "ENGINE = Null()",
                    "",
                    "",
                ),
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.clicks_in ON CLUSTER c AS d.clicks_in_local "
                    "ENGINE = Distributed(c, d, clicks_in_local, halfMD5(toString(click_id)))",
                    "",
                    "",
                ),
                (
                    "cluster",
                    "CREATE MATERIALIZED VIEW IF NOT EXISTS d.clicks_in_mv ON CLUSTER c TO d.clicks_local "
                    "AS SELECT * FROM d.clicks_in_local",
                    "",
                    "",
                ),
            ],
        ),
        (  # a table only a view writes: no sharding key, so nothing can insert through it
            BASE[1],
            [
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.daily_local ON CLUSTER c (day Date, n UInt64) "
                    f"ENGINE = ReplicatedSummingMergeTree({ZK % 'daily_local'}) ORDER BY day {SETTING}",
                    "",
                    "",
                ),
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.daily ON CLUSTER c AS d.daily_local "
                    "ENGINE = Distributed(c, d, daily_local)",
                    "",
                    "",
                ),
            ],
        ),
        (
            BASE[2],
            [
                # and also writes the block's salt, so that two blocks with equal sums stay two parts
                (
                    "shard",
                    "ALTER TABLE d.daily_local ADD COLUMN block_salt UInt64 DEFAULT 0",
                    "daily_local",
                    "block_salt",
                ),
                (
                    "cluster",
                    "CREATE MATERIALIZED VIEW IF NOT EXISTS d.daily_mv ON CLUSTER c TO d.daily_local AS "
                    "SELECT toDate(ts) AS day, count() AS n, "
                    "sum(cityHash64(click_id)) AS block_salt FROM d.clicks_in_local GROUP BY day",
                    "",
                    "",
                ),
            ],
        ),
        (  # engine arguments follow the ZooKeeper path and replica name
            BASE[3],
            [
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.links_local ON CLUSTER c (code String, v UInt64) "
                    f"ENGINE = ReplicatedReplacingMergeTree({ZK % 'links_local'}, v) ORDER BY code {SETTING}",
                    "",
                    "",
                ),
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.links ON CLUSTER c AS d.links_local "
                    "ENGINE = Distributed(c, d, links_local, halfMD5(toString(code)))",
                    "",
                    "",
                ),
            ],
        ),
        (  # a table nobody named: sharded by the first column of its sort key
            BASE[4],
            [
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.payouts_local ON CLUSTER c "
                    "(creator_id String, amount Int64, "
                    f"s String DEFAULT 'a,b') ENGINE = ReplicatedMergeTree({ZK % 'payouts_local'}) "
                    f"ORDER BY (creator_id, amount) {SETTING}",
                    "",
                    "",
                ),
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.payouts ON CLUSTER c AS d.payouts_local "
                    "ENGINE = Distributed(c, d, payouts_local, halfMD5(toString(creator_id)))",
                    "",
                    "",
                ),
            ],
        ),
        (  # a view with its own storage: replicated locally, Distributed under its name
            "CREATE MATERIALIZED VIEW IF NOT EXISTS d.totals ENGINE = SummingMergeTree() "
            "PARTITION BY toYYYYMM(day) ORDER BY (day) AS SELECT toDate(ts) AS day, sum(n) AS n "
            "FROM d.clicks GROUP BY day",
            [
                (
                    "cluster",
                    "CREATE MATERIALIZED VIEW IF NOT EXISTS d.totals_local ON CLUSTER c "
                    f"ENGINE = ReplicatedSummingMergeTree({ZK % 'totals_local'}) PARTITION BY toYYYYMM(day) "
                    f"ORDER BY (day) {SETTING} AS SELECT toDate(ts) AS day, sum(n) AS n, "
                    "sum(cityHash64(click_id)) AS block_salt FROM d.clicks_in_local GROUP BY day",
                    "",
                    "",
                ),
                (
                    "cluster",
                    "CREATE TABLE IF NOT EXISTS d.totals ON CLUSTER c AS d.totals_local "
                    "ENGINE = Distributed(c, d, totals_local)",
                    "",
                    "",
                ),
            ],
        ),
        (  # a column: on one replica per shard for the local table, on every node for the Distributed one
            "ALTER TABLE d.clicks ADD COLUMN source String DEFAULT ''",
            [
                (
                    "shard",
                    "ALTER TABLE d.clicks_local ADD COLUMN source String DEFAULT ''",
                    "clicks_local",
                    "source",
                ),
                ("host", "ALTER TABLE d.clicks ADD COLUMN source String DEFAULT ''", "clicks", "source"),
                (  # the entrance after the table: its view passes every column on
                    "host",
                    "ALTER TABLE d.clicks_in_local ADD COLUMN source String DEFAULT ''",
                    "clicks_in_local",
                    "source",
                ),
                (
                    "host",
                    "ALTER TABLE d.clicks_in ADD COLUMN source String DEFAULT ''",
                    "clicks_in",
                    "source",
                ),
            ],
        ),
    ],
)
def test_known_shapes(statement: str, expected: list) -> None:
    assert plan(statement) == [(scope, norm(sql), t, c) for scope, sql, t, c in expected]


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("DROP TABLE d.clicks", "not a CREATE TABLE"),
        ("CREATE TABLE d.x (a String) ENGINE = MergeTree() ORDER BY a", "not a CREATE TABLE"),
        ("CREATE TABLE IF NOT EXISTS d.x (a String) ENGINE = Log", "no ENGINE"),
        ("CREATE TABLE IF NOT EXISTS d.x (a String) ENGINE = Memory()", "engine Memory"),
        (
            "CREATE TABLE IF NOT EXISTS d.x (a String) ENGINE = MergeTree() ORDER BY a AS SELECT 1",
            "unexpected",
        ),
        (
            "CREATE TABLE IF NOT EXISTS other.x (a String) ENGINE = MergeTree() ORDER BY a",
            "names database other",
        ),
        ("CREATE TABLE IF NOT EXISTS d.x_local (a String) ENGINE = MergeTree() ORDER BY a", "_local"),
        ("CREATE TABLE IF NOT EXISTS d.clicks_in (a String) ENGINE = MergeTree() ORDER BY a", "entrances"),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS d.j TO d.daily AS SELECT toDate(ts) AS day, count() AS n "
            "FROM d.clicks JOIN d.links USING code GROUP BY day",
            "more than one table",
        ),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS d.j TO d.daily POPULATE AS "
            "SELECT toDate(ts) AS day FROM d.clicks",
            "not a CREATE TABLE",
        ),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS d.j TO d.nowhere AS SELECT 1 AS n FROM d.clicks",
            "d.nowhere"[2:],
        ),
        (  # a view of a table with an entrance has no sum to carry its block's salt
            "CREATE MATERIALIZED VIEW IF NOT EXISTS d.j TO d.daily AS "
            "SELECT toDate(ts) AS day, n FROM d.clicks",
            "must aggregate",
        ),
        ("ALTER TABLE d.clicks ADD COLUMN a String, ADD COLUMN b String", "one column"),
        ("ALTER TABLE d.ghost ADD COLUMN a String", "ghost"),
        ("ALTER TABLE d.clicks DROP COLUMN n", "not a CREATE TABLE"),
    ],
)
def test_unknown_shapes_are_refused_by_name(statement: str, why: str) -> None:
    with pytest.raises(UnknownShape) as info:
        plan(statement)
    assert why in str(info.value)
    assert norm(statement)[:40] in str(info.value)


def test_the_salt_goes_before_the_from_of_the_table_not_one_in_an_expression() -> None:
    view = (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS d.hourly_mv TO d.daily AS SELECT toDate(ts) AS day, "
        "count() AS n, EXTRACT(HOUR FROM ts) AS h FROM d.clicks GROUP BY day, h"
    )
    (_, _, _, _), (_, sql, _, _) = plan(view)
    assert "EXTRACT(HOUR FROM ts) AS h, sum(cityHash64(click_id)) AS block_salt FROM d.clicks_in_local" in sql


def test_a_table_without_a_usable_key_is_refused() -> None:
    bad = (
        "CREATE TABLE IF NOT EXISTS d.odd (at DateTime, v Float64) ENGINE = MergeTree() ORDER BY (toDate(at))"
    )
    with pytest.raises(ValueError, match="no sharding key for table odd"):
        Planner(DB, CL, [bad]).steps(bad)


def test_every_shipped_migration_plans_with_the_chosen_keys() -> None:
    statements = [s for m in available() for s in m.statements("clicktrail")]
    planner = Planner("clicktrail", "clicktrail", statements)
    for statement in statements:
        assert planner.steps(statement)
    keys = planner.keys()
    assert {t: keys[t] for t in SHARD_KEYS} == SHARD_KEYS
    # Rollups are written only by their views.
    assert all(keys[t] is None for t in ("clicks_daily", "creator_clicks_daily", "commissions_daily"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [  # SELECT halfMD5('abc'), halfMD5(''), halfMD5(toString(42)) on ClickHouse 18.16 and current
        ("abc", 10376663631224000432),
        ("", 15284527576400310788),
        (b"abc", 10376663631224000432),
        (42, shard_hash("42")),
    ],
)
def test_shard_hash_is_clickhouses_half_md5(value: object, expected: int) -> None:
    assert shard_hash(value) == expected


@pytest.mark.parametrize(
    ("weights", "slot", "shard"), [((1, 1), 0, 0), ((1, 1), 1, 1), ((2, 1), 1, 0), ((2, 1), 2, 1)]
)
def test_shard_weights_own_consecutive_slots(weights: tuple, slot: int, shard: int, monkeypatch) -> None:
    monkeypatch.setattr("core.clusterddl.shard_hash", lambda _v: slot)
    assert shard_index("x", weights) == shard


@given(st.text(max_size=40), st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_shard_index_is_the_hash_modulo_the_total_weight(value: str, weights: list[int]) -> None:
    index = shard_index(value, weights)
    slot = shard_hash(value) % sum(weights)
    assert sum(weights[:index]) <= slot < sum(weights[: index + 1])


@pytest.mark.parametrize(
    "clauses, planned",
    [
        ("ORDER BY x", f"ORDER BY x SETTINGS {REPLICA_SETTINGS}"),
        (
            "ORDER BY x SETTINGS index_granularity = 8192",
            f"ORDER BY x SETTINGS index_granularity = 8192, {REPLICA_SETTINGS}",
        ),
        (
            "PARTITION BY toYYYYMM(d) ORDER BY (x, d) settings index_granularity=1024",
            f"PARTITION BY toYYYYMM(d) ORDER BY (x, d) settings index_granularity=1024, {REPLICA_SETTINGS}",
        ),
    ],
)
def test_every_replicated_table_may_be_restarted_with_unknown_parts(clauses: str, planned: str) -> None:
    """core/orphanparts.py restarts a replica's table to set aside parts ZooKeeper never recorded, which
    ClickHouse refuses above `replicated_max_ratio_of_wrong_parts` of its rows (0.5 by default)."""
    statement = f"CREATE TABLE IF NOT EXISTS d.t (x UInt8, d Date) ENGINE = MergeTree() {clauses}"
    (local, *_) = plan(statement)
    assert local[1].endswith(planned), local[1]


@pytest.mark.parametrize(
    "clauses",
    [
        "",  # the old syntax, MergeTree(date, key, 8192): no SETTINGS may follow
        "ORDER BY x POPULATE",
        "ORDER BY x SETTINGS replicated_max_ratio_of_wrong_parts = 0.5",
    ],
)
def test_shapes_the_setting_cannot_join_are_refused(clauses: str) -> None:
    with pytest.raises(UnknownShape):
        plan(f"CREATE TABLE IF NOT EXISTS d.t (x UInt8, d Date) ENGINE = MergeTree() {clauses}")
