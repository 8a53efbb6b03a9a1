"""The migrations and every query in core/queries.py, run on ClickHouse 18.16 (the shared server)
and on a current ClickHouse (chdb, in process): the same SQL, the same answers."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from core import queries
from core.clickhouse import Backend
from core.migrate import applied, apply_statement, available, migrate
from core.rows import ClickRow, LinkRow

BACKENDS = [
    pytest.param("clickhouse", marks=pytest.mark.clickhouse, id="clickhouse-18.16"),
    pytest.param("chdb_backend", marks=pytest.mark.chdb, id="chdb-current"),
]
DAY1_MS = 1_764_201_600_000  # 2025-11-27 00:00 UTC
DAY2_MS = DAY1_MS + 86_400_000
MONTH2_MS = 1_764_547_200_000  # 2025-12-01 00:00 UTC: another partition
ROLLUPS = ("clicks_daily", "creator_clicks_daily", "merchant_clicks_daily", "clicks_daily_dims")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    backend = request.getfixturevalue(request.param)
    migrate(backend, log=lambda _line: None)
    return backend


def click_row(click_id: str, ts_ms: int, code: str, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {name: "" for name in ClickRow.columns()}
    row.update(
        click_id=click_id,
        ts=ts_ms // 1000,
        ts_ms=ts_ms,
        code=code,
        creator_id="cr1",
        merchant_id="m1",
        is_head=0,
        is_bot=0,
        is_unique=1,
        ip_hash=7,
        variant=-1,
    )
    row.update(extra)
    return row


def insert_clicks(backend: Backend, rows: list[dict[str, object]]) -> None:
    backend.insert("clicks", ClickRow.columns(), [[row[c] for row in rows] for c in ClickRow.columns()])


SAMPLE = [
    click_row("id-1", DAY1_MS + 1_000, "abc1234", country="DE", device="mobile", referer_host="tiktok.com"),
    click_row("id-2", DAY1_MS + 2_000, "abc1234", country="DE", device="mobile", is_unique=0),
    click_row(
        "id-3", DAY1_MS + 3_000, "abc1234", is_bot=1, is_unique=0, bot_reason="preview:facebook", device="bot"
    ),
    click_row("id-4", DAY2_MS + 5_000, "abc1234", country="FR", device="desktop"),
    click_row("id-5", DAY2_MS + 6_000, "xyz9876", creator_id="cr2", country="FR"),
    click_row("id-6", MONTH2_MS + 1_000, "xyz9876", creator_id="cr2", merchant_id=""),
]


def test_migrations_are_idempotent(backend: Backend) -> None:
    assert migrate(backend, log=lambda _line: None) == []
    assert applied(backend) == {m.version for m in available()}
    tables = {row[0] for row in backend.execute(f"SHOW TABLES FROM {backend.database}")}
    assert {"clicks", "links", *ROLLUPS} <= tables


def test_every_statement_is_idempotent_on_its_own(backend: Backend) -> None:
    """A migration that died half-way is finished by the next run: every statement may run twice."""
    for migration in available():
        for statement in migration.statements(backend.database):
            apply_statement(backend, statement)


def test_queries(backend: Backend) -> None:
    insert_clicks(backend, SAMPLE)
    assert queries.click_count(backend) == 6
    totals = queries.rollup_totals(backend)
    assert set(totals.values()) == {(6, 4, 1)}, totals

    assert queries.link_totals_sync(backend, "abc1234") == {"clicks": 4, "unique": 2, "bots": 1}
    assert asyncio.run(queries.link_totals(backend, "xyz9876")) == {"clicks": 2, "unique": 2, "bots": 0}
    assert asyncio.run(queries.link_totals(backend, "nope")) == {"clicks": 0, "unique": 0, "bots": 0}

    first, last = date(2025, 11, 1), date(2025, 11, 30)
    assert queries.link_daily(backend, "abc1234", first, last) == [
        {"day": "2025-11-27", "clicks": 3, "unique": 1, "bots": 1},
        {"day": "2025-11-28", "clicks": 1, "unique": 1, "bots": 0},
    ]
    assert queries.creator_clicks(backend, "cr2", first, last) == {"clicks": 1, "unique": 1, "bots": 0}
    assert queries.creator_clicks(backend, "cr2", first, date(2025, 12, 31))["clicks"] == 2
    assert queries.merchant_top_links(backend, "m1", first, last) == [
        {"code": "abc1234", "creator_id": "cr1", "human_clicks": 3, "unique": 2},
        {"code": "xyz9876", "creator_id": "cr2", "human_clicks": 1, "unique": 1},
    ]
    assert queries.link_breakdown(backend, "abc1234", "country", first, last) == {"DE": 2, "FR": 1, "": 0}
    assert queries.link_breakdown(backend, "abc1234", "device", first, last) == {
        "mobile": 2,
        "desktop": 1,
        "bot": 0,
    }
    with pytest.raises(ValueError):
        queries.link_breakdown(backend, "abc1234", "ip_hash", first, last)


def test_existing_click_ids(backend: Backend) -> None:
    insert_clicks(backend, SAMPLE)
    asked = [("id-1", DAY1_MS + 1_000), ("id-6", MONTH2_MS + 1_000), ("id-9", DAY1_MS)]
    assert queries.existing_click_ids(backend, asked) == {"id-1", "id-6"}
    assert queries.existing_click_ids(backend, [("id-9", DAY1_MS)]) == set()


def test_links_mirror(backend: Backend) -> None:
    columns = LinkRow.columns()
    versions = [
        (
            "abc1234",
            "https://shop.example/p/1",
            "cr1",
            "",
            "shop.example",
            1_700_000_000,
            1_700_000_000_000,
            0,
            1,
        ),
        (
            "abc1234",
            "https://shop.example/p/1",
            "cr1",
            "m1",
            "shop.example",
            1_700_000_000,
            1_700_000_000_000,
            0,
            2,
        ),
        (
            "abc1234",
            "https://shop.example/p/1",
            "cr1",
            "m1",
            "shop.example",
            1_700_000_000,
            1_700_000_000_000,
            1,
            3,
        ),
    ]
    versions = [(*version, "") for version in versions]  # smart (0042): plain link versions
    for version in versions:  # three inserts: three parts, merged (or not) by ClickHouse later
        backend.insert("links", columns, [[value] for value in version])
    latest = queries.latest_links(backend, ["abc1234", "other"])
    assert latest == {
        "abc1234": {
            "url": "https://shop.example/p/1",
            "creator_id": "cr1",
            "merchant_id": "m1",
            "disabled": True,
            "updated_at_ms": 3,
        }
    }
    assert queries.existing_link_versions(backend, [("abc1234", 2), ("abc1234", 9), ("zzz", 1)]) == {
        ("abc1234", 2)
    }


def test_an_added_column_is_added_once(backend: Backend) -> None:
    """18.16 has no `ADD COLUMN IF NOT EXISTS`: the migrator skips a column that is already there."""
    db = backend.database
    backend.execute(f"CREATE TABLE IF NOT EXISTS {db}.alter_probe (a UInt8) ENGINE = MergeTree() ORDER BY a")
    statement = f"ALTER TABLE {db}.alter_probe ADD COLUMN b String DEFAULT 'x'"
    apply_statement(backend, statement)
    apply_statement(backend, statement)
    columns = [
        row[0]
        for row in backend.execute(
            f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'alter_probe'"
        )
    ]
    assert columns == ["a", "b"]


def test_variant_rollup_and_conversion(backend: Backend) -> None:
    """Smart-link variants (0040, 0041): the rollup per variant, and the README's conversion query."""
    insert_clicks(
        backend,
        [
            click_row("v-1", DAY1_MS + 1_000, "ab1", variant=0),
            click_row("v-2", DAY1_MS + 2_000, "ab1", variant=0),
            click_row("v-3", DAY1_MS + 3_000, "ab1", variant=1),
            click_row("v-4", DAY1_MS + 4_000, "ab1", variant=1, is_bot=1, is_unique=0),
            click_row("v-5", DAY1_MS + 5_000, "plain1"),  # no variant: not in the rollup
        ],
    )
    rollup = backend.execute(
        f"SELECT code, variant, sum(clicks), sum(bot_clicks) FROM {backend.database}.clicks_variants_daily "
        "GROUP BY code, variant ORDER BY code, variant"
    )
    assert [tuple(r) for r in rollup] == [("ab1", 0, 2, 0), ("ab1", 1, 2, 1)]
    ledger = [  # (order_id, entry_id, kind, amount_minor, click_id)
        ("O1", "e1", "accrual", 500, "v-1"),
        ("O1", "e2", "reversal", -100, "v-1"),
        ("O2", "e1", "accrual", 300, "v-3"),
        ("O3", "e1", "none", 0, "v-2"),  # an order that earned nothing is no conversion
    ]
    columns = ("order_id", "entry_id", "kind", "amount_minor", "click_id")
    backend.insert("commissions", columns, [list(c) for c in zip(*ledger, strict=True)])
    assert queries.variant_conversion(backend, "ab1") == [(0, 2, 1, 400), (1, 1, 1, 300)]
