"""Order events: from the `Keys.orders` stream into ClickHouse `order_events`, exactly once per
(merchant_id, webhook_id), through the generic exactly-once consumer (core/streams.py).

This module is only the `Handler`: how an entry (written by webhooks.Acceptor) becomes a row, and how to
ask ClickHouse which (merchant_id, webhook_id) it holds already. `order_stream_spec()` is what
`clicktrail ingest` adds to its list of streams.

Exactly once per stream entry comes from streams.py (redelivered entries are checked against ClickHouse by
(merchant_id, webhook_id) before insert). Once per webhook-id comes from the acceptor's Redis record
(days); past that, a second row of one webhook-id could still never be counted twice: the attributor
folds an order's events by webhook-id.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from attribution import queries, webhooks
from attribution.ledger import Item, OrderEvent
from core import clock
from core.clickhouse import Backend
from core.keys import Keys
from core.streams import Poison, StreamSpec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLUMNS = (
    "merchant_id",
    "webhook_id",
    "event_type",
    "order_id",
    "click_id",
    "currency",
    "occurred_at",
    "occurred_ms",
    "received_ms",
    "ingested_ms",
    "item_sku",
    "item_category",
    "item_unit_price_minor",
    "item_quantity",
    "body_sha256",
    "stream_entry",
)


def to_row(entry_id: str, fields: dict[bytes, bytes]) -> tuple:
    """One order_events row (ingested_ms filled at build time); raises Poison when undecodable."""
    if fields.get(b"v") != webhooks.STREAM_VERSION.encode():
        raise Poison("unknown_version")
    try:
        body = fields[b"b"]
        parsed = webhooks.parse(body)
        merchant_id, webhook_id, received_ms = fields[b"m"].decode(), fields[b"w"].decode(), int(fields[b"t"])
    except (KeyError, ValueError, UnicodeDecodeError, msgspec.MsgspecError):
        raise Poison("undecodable") from None
    data = parsed.data
    occurred_ms = (data.occurred_at - EPOCH) // timedelta(milliseconds=1)  # exact: no float rounding
    items = data.items
    return (
        merchant_id,
        webhook_id,
        parsed.type,
        data.order_id,
        data.click_id,
        data.currency,
        occurred_ms // 1000,
        occurred_ms,
        received_ms,
        0,
        [i.sku for i in items],
        [i.category for i in items],
        [i.unit_price_minor for i in items],
        [i.quantity for i in items],
        hashlib.sha256(body).hexdigest(),
        entry_id,
    )


def row_to_event(row: tuple) -> OrderEvent:
    """An OrderEvent from a row of queries.events_for_orders."""
    (
        merchant_id,
        webhook_id,
        event_type,
        order_id,
        click_id,
        currency,
        occurred_ms,
        skus,
        cats,
        prices,
        qtys,
    ) = row
    items = tuple(
        Item(sku=s, unit_price_minor=int(p), quantity=int(q), category=c)
        for s, c, p, q in zip(skus, cats, prices, qtys, strict=True)
    )
    return OrderEvent(
        merchant_id, webhook_id, event_type, order_id, click_id, currency, int(occurred_ms), items
    )


class OrderEventsHandler:
    name = "orders"
    table = "order_events"
    columns = COLUMNS

    def decode(self, entry_id: str, fields: dict[bytes, bytes]) -> list[Any]:
        return [to_row(entry_id, fields)]

    def key(self, record: Any) -> Hashable:
        return (record[0], record[1])

    def existing(self, backend: Backend, records: list[Any]) -> set[Hashable]:
        by_merchant: dict[str, list[str]] = defaultdict(list)
        for record in records:
            by_merchant[record[0]].append(record[1])
        present: set[Hashable] = set()
        for merchant_id, webhook_ids in by_merchant.items():
            found = backend.execute(
                queries.stored_webhook_ids(backend.database),
                {"merchant_id": merchant_id, "webhook_ids": tuple(webhook_ids)},
            )
            present.update((merchant_id, w) for (w,) in found)
        return present

    def build(self, records: list[Any]) -> list[list[Any]]:
        # ingested_ms is the attributor's cursor: when this row became visible (approximately).
        now_ms = clock.now_ms()
        rows = [(*r[:9], now_ms, *r[10:]) for r in records]
        return [list(col) for col in zip(*rows, strict=True)]


def order_stream_spec(keys: Keys) -> StreamSpec:
    """For `clicktrail ingest`: the order stream and how to store it."""
    return StreamSpec("orders", keys.orders, keys.orders_dead, lambda _client: OrderEventsHandler())
