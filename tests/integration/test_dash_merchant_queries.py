"""The merchant pages' queries (core/queries.py: merchant_daily, merchant_creators, merchant_orders,
order_commissions) give the same answers on ClickHouse 18.16, current ClickHouse (chdb) and the 2x2
cluster, from rows inserted into the raw tables (the rollups follow by themselves)."""

from __future__ import annotations

from core import queries
from tests.integration.test_dash_queries import CLICKS, DAY1, DAY2, LEDGER, T1_S, T2_S, columns, db

__all__ = ["db"]  # the fixture: each ClickHouse in turn, migrated

EVENTS = ("merchant_id", "webhook_id", "event_type", "order_id", "currency", "occurred_at", "occurred_ms",
          "received_ms")  # fmt: skip


def test_the_merchant_queries_agree_on_every_clickhouse(db) -> None:
    clicks = [
        ("a", T1_S, "c1", "alice", "m1", 0, 0),
        ("b", T1_S, "c1", "alice", "m1", 0, 1),
        ("c", T2_S, "c2", "alice", "m1", 1, 0),  # HEAD: counted as a click of the rollups, not a bot
        ("d", T2_S, "c3", "bob", "m1", 0, 0),
        ("e", T2_S, "z9", "bob", "m2", 0, 0),
    ]
    rows = [
        (i, t, t * 1000, code, who, m, head, bot, "FR", "mobile") for i, t, code, who, m, head, bot in clicks
    ]
    db.insert("clicks", CLICKS, columns(rows))
    ledger = [
        ("m1", "O-1", "acc:0", "accrual", "pending", 500, 1, "EUR", "alice", T1_S, T1_S * 1000, T1_S * 1000),
        ("m1", "O-1", "acc:1", "accrual", "pending", 300, 0, "EUR", "alice", T1_S, T1_S * 1000, T1_S * 1000),
        ("m1", "O-3", "acc:0", "accrual", "pending", 900, 1, "USD", "bob", T2_S, T2_S * 1000, T2_S * 1000),
        ("m1", "O-4", "acc:0", "accrual", "pending", 100, 1, "EUR", "bob", T2_S, T2_S * 1000, T2_S * 1000),
        ("m1", "O-5", "acc:0", "accrual", "pending", 100, 1, "EUR", "bob", T2_S, T2_S * 1000, T2_S * 1000),
        ("m1", "O-5", "rev:1", "reversal", "pending", -100, -1, "EUR", "bob", T2_S, T2_S * 1000, T2_S * 1000),
        ("m1", "O-2", "none:bot", "none", "pending", 0, 0, "EUR", "", T2_S, T2_S * 1000, T2_S * 1000),
        ("m2", "O-1", "acc:0", "accrual", "pending", 700, 1, "EUR", "bob", T1_S, T1_S * 1000, T1_S * 1000),
    ]  # fmt: skip
    db.insert("commissions", LEDGER, columns(ledger))
    events = [
        ("m1", "w1", "order.created", "O-1", "EUR", T1_S, T1_S * 1000, 1_000),
        ("m1", "w2", "order.refunded", "O-1", "EUR", T2_S, T2_S * 1000, 3_000),
        ("m1", "w3", "order.created", "O-2", "EUR", T2_S, T2_S * 1000, 2_000),
        ("m2", "w4", "order.created", "O-1", "EUR", T2_S, T2_S * 1000, 9_000),
    ]
    db.insert("order_events", EVENTS, columns(events))

    assert queries.merchant_daily(db, "m1", DAY1, DAY2) == [(str(DAY1), 1, 1), (str(DAY2), 2, 0)]
    assert queries.merchant_daily(db, "m1", DAY2, DAY2) == [(str(DAY2), 2, 0)]
    assert queries.merchant_daily(db, "nobody", DAY1, DAY2) == []

    # ranked by orders credited, then net; a reversed order counts no more; never another merchant's rows
    assert queries.merchant_creators(db, "m1", DAY1, DAY2) == [
        ("bob", "USD", 1, 900, 900.0),
        ("alice", "EUR", 1, 800, 800.0),
        ("bob", "EUR", 1, 100, 300.0),
    ]
    assert queries.merchant_creators(db, "m1", DAY1, DAY2, limit=1) == [("bob", "USD", 1, 900, 900.0)]
    assert queries.merchant_creators(db, "m1", DAY2, DAY2) == [
        ("bob", "USD", 1, 900, 900.0),
        ("bob", "EUR", 1, 100, 300.0),
    ]

    assert queries.merchant_orders(db, "m1", 10) == [("O-1", 2, 3_000), ("O-2", 1, 2_000)]
    assert queries.merchant_orders(db, "m1", 1) == [("O-1", 2, 3_000)]
    assert queries.order_commissions(db, "m1", ["O-1", "O-2", "O-5", "none"]) == {
        "O-1": [("alice", "EUR", "pending", 800)]
    }  # O-2 earned nothing, O-5 was reversed: no net left
    assert queries.order_commissions(db, "m1", []) == {}
