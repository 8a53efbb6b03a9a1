"""Order-stream entries the ingester cannot store are dead-lettered with the precise reason (the dead letter's
`dead_reason` and the `clicktrail_stream_dead_letters_total` label), in the names the click and link
streams use, and the entries around them are stored."""

from __future__ import annotations

import threading

import pytest
import redis
from prometheus_client import CollectorRegistry

from attribution.events import order_stream_spec
from core.clickhouse import NativeClickHouse
from core.keys import INGEST_GROUP, Keys
from core.migrate import migrate
from core.settings import Settings
from core.streaminfo import StreamMetrics
from core.streams import ConsumerConfig, StreamConsumer
from tests.unit.test_webhook_rules import GOOD
from tests.unit.test_webhook_rules import ORDER_POISON as POISON

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]


def test_each_undecodable_order_entry_is_dead_lettered_with_its_reason(
    settings: Settings, redis_client: redis.Redis, clickhouse: NativeClickHouse
) -> None:
    migrate(clickhouse, log=lambda _line: None)
    keys = Keys(settings.redis_prefix)
    redis_client.xadd(keys.orders, {**GOOD, b"w": b"w-first"})
    poison_ids = [redis_client.xadd(keys.orders, fields).decode() for fields, _ in POISON]
    redis_client.xadd(keys.orders, {**GOOD, b"w": b"w-last"})

    spec = order_stream_spec(keys)
    config = ConsumerConfig(
        stream=spec.stream, dead_stream=spec.dead_stream, group=INGEST_GROUP, consumer="t",
        batch_size=1000, flush_interval_ms=10,
    )  # fmt: skip
    registry = CollectorRegistry()
    client = redis.Redis.from_url(settings.redis_url)
    try:
        consumer = StreamConsumer(
            client, clickhouse, spec.make_handler(client), config, StreamMetrics(registry)
        )
        assert consumer.run(threading.Event(), once=True) is True
    finally:
        client.close()

    dead = redis_client.xrange(keys.orders_dead)
    assert [(f[b"dead_entry"].decode(), f[b"dead_reason"].decode()) for _, f in dead] == [
        (entry_id, reason) for entry_id, (_, reason) in zip(poison_ids, POISON, strict=True)
    ]
    for reason in {reason for _, reason in POISON}:
        sample = {"stream": "orders", "reason": reason}
        expected = sum(1 for _, r in POISON if r == reason)
        assert registry.get_sample_value("clicktrail_stream_dead_letters_total", sample) == expected, reason
    stored = clickhouse.execute(
        f"SELECT webhook_id FROM {clickhouse.database}.order_events ORDER BY webhook_id"
    )
    assert stored == [("w-first",), ("w-last",)]
    assert redis_client.xpending(keys.orders, INGEST_GROUP)["pending"] == 0
