"""The dashboard's queries (core/queries.py: creator_daily, links_breakdown, links_totals, creator_orders,
creator_payout_ids) give the same answers on ClickHouse 18.16, on current ClickHouse (chdb) and on the
2x2 cluster (Distributed over Replicated tables), from rows inserted into the raw tables."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core import queries
from core.migrate import migrate

DAY1 = date(2026, 11, 3)
DAY2 = date(2026, 11, 4)
T1_S = int(datetime(2026, 11, 3, 12, tzinfo=UTC).timestamp())
T2_S = T1_S + 86_400

CLICKS = (
    "click_id",
    "ts",
    "ts_ms",
    "code",
    "creator_id",
    "merchant_id",
    "is_head",
    "is_bot",
    "country",
    "device",
)
LEDGER = (
    "merchant_id", "order_id", "entry_id", "kind", "status", "amount_minor", "orders", "currency",
    "creator_id", "effective_at", "effective_ms", "booked_ms",
)  # fmt: skip
LINES = ("merchant_id", "payout_id", "batch_id", "creator_id", "currency", "order_id", "entry_id", "sign",
         "amount_minor", "created_at", "created_ms")  # fmt: skip


@pytest.fixture(
    params=[
        pytest.param("clickhouse", marks=[pytest.mark.clickhouse]),
        pytest.param("chdb", marks=[pytest.mark.chdb]),
        pytest.param("cluster", marks=[pytest.mark.clickhouse, pytest.mark.cluster]),
    ]
)
def db(request):
    chosen = request.getfixturevalue(
        {"clickhouse": "clickhouse", "chdb": "chdb_backend", "cluster": "cluster_backend"}[request.param]
    )
    migrate(chosen, log=lambda *_: None)
    return chosen


def columns(rows: list[tuple]) -> list[list]:
    return [list(c) for c in zip(*rows, strict=True)]


def test_the_dashboards_queries_agree_on_every_clickhouse(db) -> None:
    clicks = [
        ("a", T1_S, "c1", "alice", 0, 0, "FR", "mobile"),
        ("b", T1_S, "c1", "alice", 0, 1, "US", "desktop"),
        ("c", T2_S, "c2", "alice", 1, 0, "FR", "mobile"),  # HEAD: a click of the rollups, human
        ("d", T2_S, "c2", "alice", 0, 0, "", "tablet"),
        ("e", T2_S, "z9", "bob", 0, 0, "IT", "mobile"),
    ]
    rows = [
        (i, t, t * 1000, code, who, "m1", head, bot, country, device)
        for i, t, code, who, head, bot, country, device in clicks
    ]
    db.insert("clicks", CLICKS, columns(rows))
    ledger = [
        ("m1", "O-1", "acc:0", "accrual", "pending", 500, 1, "EUR", "alice", T1_S, T1_S * 1000, T1_S * 1000),
        (
            "m1",
            "O-1",
            "acc:1",
            "accrual",
            "pending",
            300,
            0,
            "EUR",
            "alice",
            T1_S,
            T1_S * 1000,
            T1_S * 1000 + 1,
        ),
        ("m2", "O-1", "acc:0", "accrual", "pending", 700, 1, "EUR", "bob", T1_S, T1_S * 1000, T1_S * 1000),
        ("m1", "O-2", "none:bot", "none", "pending", 0, 0, "EUR", "alice", T2_S, T2_S * 1000, T2_S * 1000),
    ]
    db.insert("commissions", LEDGER, columns(ledger))
    lines = [
        ("m1", "po_old", "b1", "alice", "EUR", "O-1", "acc:0", 1, 500, T1_S, T1_S * 1000),
        ("m1", "po_new", "b2", "alice", "EUR", "O-1", "acc:1", 1, 300, T2_S, T2_S * 1000),
        ("m2", "po_bob", "b3", "bob", "EUR", "O-1", "acc:0", 1, 700, T2_S, T2_S * 1000),
    ]
    db.insert("payout_lines", LINES, columns(lines))

    assert queries.creator_daily(db, "alice", DAY1, DAY2) == [(str(DAY1), 1, 1), (str(DAY2), 2, 0)]
    assert queries.creator_daily(db, "alice", DAY2, DAY2) == [(str(DAY2), 2, 0)]
    assert queries.links_breakdown(db, ["c1", "c2"], "country", DAY1, DAY2) == {"FR": 2, "US": 0, "": 1}
    assert queries.links_breakdown(db, ["c1", "c2"], "device", DAY1, DAY1) == {"mobile": 1, "desktop": 0}
    assert queries.links_breakdown(db, [], "device", DAY1, DAY2) == {}
    with pytest.raises(ValueError):
        queries.links_breakdown(db, ["c1"], "country; DROP TABLE clicks", DAY1, DAY2)
    assert queries.links_totals(db, ["c1", "c2", "none"]) == {
        "c1": {"clicks": 2, "unique": 0, "bots": 1},
        "c2": {"clicks": 2, "unique": 0, "bots": 0},
        "none": {"clicks": 0, "unique": 0, "bots": 0},
    }
    assert queries.link_totals_sync(db, "c1") == {"clicks": 2, "unique": 0, "bots": 1}

    found = queries.creator_orders(db, "alice", DAY1, 10)
    assert [(r.merchant_id, r.order_id, r.entry_id) for r in found] == [
        ("m1", "O-1", "acc:0"),
        ("m1", "O-1", "acc:1"),
        ("m1", "O-2", "none:bot"),
    ]  # never Bob's row of the same order id at another merchant
    latest = queries.creator_orders(db, "alice", DAY1, 1)
    assert {r.order_id for r in latest} == {"O-2"}  # the last booked
    assert queries.creator_orders(db, "alice", DAY2, 10)[0].order_id == "O-2"
    assert queries.creator_orders(db, "carol", DAY1, 10) == []
    assert queries.creator_payout_ids(db, "alice", 10) == ["po_new", "po_old"]
    assert queries.creator_payout_ids(db, "alice", 1) == ["po_new"]
