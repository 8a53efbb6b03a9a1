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
from typing import Any

import msgspec

from attribution import webhooks
from attribution.ledger import Item, OrderEvent
from core import clock, queries, validate
from core.clickhouse import Backend
from core.keys import Keys
from core.rows import OrderEventRow, columnar
from core.streams import Poison, StreamSpec

# A receipt time (the acceptor's clock) lies where an order's time may (webhooks.OCCURRED_MAX): the trace
# shows it as a date, which a time past year 9999 is not (such a row made the order's trace a 500). The
# UInt64 column itself held up to 2^64 - 1.
RECEIVED_MAX_MS = clock.datetime_ms(webhooks.OCCURRED_MAX)


def receipt_ms(stored: int) -> int:
    """A stored receipt time as the ledger reads it: 0 (not known) for one no acceptor wrote, a row stored
    before `to_row` bounded it."""
    return stored if 0 <= stored < RECEIVED_MAX_MS else 0


# The entry's fields besides the version and the body (webhooks.Acceptor writes them), by the name their
# dead-letter reasons give them: missing_<name>, invalid_<name>.
_HEADER_FIELDS = ((b"m", "merchant_id"), (b"w", "webhook_id"), (b"t", "received_ms"))


def to_row(entry_id: str, fields: dict[bytes, bytes]) -> OrderEventRow:
    """One order_events row (ingested_ms filled at build time); raises Poison with the reason, in the
    ingester's names (core/streams.decode_payload): `schema_version`, `missing_order` (no body),
    `undecodable` (a body that is no JSON), `invalid_order` (JSON the stored-event schema refuses),
    `missing_<field>` / `invalid_<field>` for merchant_id, webhook_id and received_ms."""
    if fields.get(b"v") != webhooks.STREAM_VERSION.encode():
        raise Poison("schema_version")
    body = fields.get(b"b")
    if body is None:
        raise Poison("missing_order")
    try:
        parsed = webhooks.read(body)  # not `parse`: a rule added since never drops an accepted event
    except msgspec.ValidationError:
        raise Poison("invalid_order") from None
    except msgspec.DecodeError:
        raise Poison("undecodable") from None
    header = {}
    for key, name in _HEADER_FIELDS:
        raw = fields.get(key)
        if raw is None:
            raise Poison(f"missing_{name}")
        try:
            header[name] = raw.decode()
        except UnicodeDecodeError:
            raise Poison(f"invalid_{name}") from None
    merchant_id, webhook_id = header["merchant_id"], header["webhook_id"]
    # Anything but a few ASCII digits is no time the acceptor wrote: int() would also take '+5', ' 5' or
    # '5_0', and raise ValueError on 4,300 digits or more (not Poison: the entry stopped the stream).
    received_ms = validate.query_int(header["received_ms"], 0, RECEIVED_MAX_MS - 1)
    if received_ms is None:
        raise Poison("invalid_received_ms")
    data = parsed.data
    occurred_ms = clock.datetime_ms(data.occurred_at)
    items = data.items
    return OrderEventRow(
        merchant_id=merchant_id,
        webhook_id=webhook_id,
        event_type=parsed.type,
        order_id=data.order_id,
        click_id=data.click_id,
        currency=data.currency,
        occurred_at=occurred_ms // 1000,
        occurred_ms=occurred_ms,
        received_ms=received_ms,
        ingested_ms=0,  # set when the batch is built: see OrderEventsHandler.build
        item_sku=[i.sku for i in items],
        item_category=[i.category for i in items],
        item_unit_price_minor=[i.unit_price_minor for i in items],
        item_quantity=[i.quantity for i in items],
        body_sha256=hashlib.sha256(body).hexdigest(),
        stream_entry=entry_id,
        discount_codes=list(data.discount_codes),
    )


def event_of(row: OrderEventRow) -> OrderEvent:
    """The ledger's view of a stored order event."""
    items = tuple(
        Item(sku=s, unit_price_minor=p, quantity=q, category=c)
        for s, c, p, q in zip(
            row.item_sku, row.item_category, row.item_unit_price_minor, row.item_quantity, strict=True
        )
    )
    return OrderEvent(
        row.merchant_id,
        row.webhook_id,
        row.event_type,
        row.order_id,
        row.click_id,
        row.currency,
        row.occurred_ms,
        items,
        tuple(row.discount_codes),
        receipt_ms(row.received_ms),
    )


def event_of_facts(row: tuple) -> OrderEvent:
    """`event_of` for a row of queries.ORDER_EVENT_FACTS (numbers that a backend returns as text, chdb's
    64-bit integers, converted)."""
    occurred_ms, skus, cats, prices, qtys, codes, received_ms = row[6:]
    items = tuple(
        Item(sku, int(price), int(quantity), category)
        for sku, category, price, quantity in zip(skus, cats, prices, qtys, strict=True)
    )
    # The first six (merchant, webhook id, type, order, click id, currency) are the struct's own order.
    return OrderEvent(*row[:6], int(occurred_ms), items, tuple(codes), receipt_ms(int(received_ms)))


class OrderEventsHandler:
    name = "orders"
    table = "order_events"
    columns = OrderEventRow.columns()

    def decode(self, entry_id: str, fields: dict[bytes, bytes]) -> list[OrderEventRow]:
        return [to_row(entry_id, fields)]

    def key(self, record: OrderEventRow) -> Hashable:
        return (record.merchant_id, record.webhook_id)

    def existing(self, backend: Backend, records: list[OrderEventRow]) -> set[Hashable]:
        by_merchant: dict[str, list[str]] = defaultdict(list)
        for record in records:
            by_merchant[record.merchant_id].append(record.webhook_id)
        present: set[Hashable] = set()
        for merchant_id, webhook_ids in by_merchant.items():
            found = queries.stored_webhook_ids(backend, merchant_id, webhook_ids)
            present.update((merchant_id, w) for w in found)
        return present

    def close(self) -> None:
        """Nothing of its own to end."""

    def build(self, records: list[OrderEventRow]) -> list[list[Any]]:
        # ingested_ms is the attributor's cursor: when this row became visible (approximately).
        now_ms = clock.now_ms()
        return columnar([msgspec.structs.replace(r, ingested_ms=now_ms) for r in records])


def order_stream_spec(keys: Keys) -> StreamSpec:
    """For `clicktrail ingest`: the order stream and how to store it."""
    return StreamSpec("orders", keys.orders, keys.orders_dead, lambda _client: OrderEventsHandler())
