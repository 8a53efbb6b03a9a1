"""Helpers for attribution tests: a migrated backend of either ClickHouse, merchants, clicks and signed
order events put through the real acceptor and the real stream consumer."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import orjson
import redis
from prometheus_client import CollectorRegistry

from attribution.events import order_stream_spec
from attribution.merchants import Merchant, MerchantStore
from attribution.rates import RatesUpdate
from attribution.webhooks import Acceptor
from core.clickhouse import Backend
from core.keys import INGEST_GROUP, Keys
from core.rows import ClickRow
from core.streaminfo import StreamMetrics
from core.streams import ConsumerConfig, StreamConsumer

# The columns these tests fill; the rest take their defaults.
CLICK_COLUMNS = ClickRow.columns()[:9]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def add_merchant(
    redis_async,
    keys: Keys,
    merchant_id: str,
    domains: list[str],
    now_ms: int,
    default_bps: int = 800,
    categories: dict | None = None,
    transfer_domains: bool = False,
    **extra,
) -> None:
    merchant = Merchant(merchant_id, merchant_id, domains, "EUR", default_bps, created_at_ms=now_ms, **extra)
    rates = RatesUpdate(default_rate_bps=default_bps, categories=categories or {})
    store = MerchantStore(redis_async, keys)
    assert await store.create(merchant, transfer_domains, now_ms=now_ms, rates=rates)


def insert_clicks(backend: Backend, clicks: list[tuple]) -> None:
    """(click_id, ts_ms, creator_id, merchant_id, dest_host, is_head, is_bot) per click."""
    rows = [(c[0], c[1] // 1000, c[1], "code" + c[2], c[2], c[3], c[4], c[5], c[6]) for c in clicks]
    backend.insert("clicks", CLICK_COLUMNS, [list(col) for col in zip(*rows, strict=True)])


async def deliver(
    redis_async,
    keys: Keys,
    merchant_id: str,
    webhook_id: str,
    kind: str,
    order_id: str,
    click_id: str,
    at_ms: int,
    items: list[tuple[str, str, int, int]],
    currency: str = "EUR",
    received_ms: int | None = None,
) -> int:
    """`received_ms`: the receipt stored with the event (default `at_ms`; 0: as a release that kept no
    receipt stored it)."""
    body = orjson.dumps(
        {
            "type": kind,
            "data": {
                "order_id": order_id,
                "click_id": click_id,
                "currency": currency,
                "occurred_at": iso(at_ms),
                "items": [
                    {"sku": s, "category": c, "unit_price_minor": p, "quantity": q} for s, c, p, q in items
                ],
            },
        }
    )
    received = at_ms if received_ms is None else received_ms
    return await Acceptor(redis_async, keys).accept(merchant_id, webhook_id, body, received)


def ingest_orders(redis_url: str, keys: Keys, backend: Backend) -> None:
    """`clicktrail ingest --once` for the order stream, with the project's exactly-once consumer."""
    client = redis.Redis.from_url(redis_url)
    spec = order_stream_spec(keys)
    config = ConsumerConfig(
        stream=spec.stream,
        dead_stream=spec.dead_stream,
        group=INGEST_GROUP,
        consumer="test",
        batch_size=1000,
        flush_interval_ms=10,
    )
    consumer = StreamConsumer(
        client, backend, spec.make_handler(client), config, StreamMetrics(CollectorRegistry())
    )
    assert consumer.run(threading.Event(), once=True)
    client.close()
