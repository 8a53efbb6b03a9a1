"""Commission events from the attributor, on ClickHouse 18.16 and current ClickHouse (chdb): one event
per booked row group, none on a rerun, and the crash between booking and emitting recovered (the
staged events of rows that landed are emitted once; those of rows that did not are dropped and the
rows booked and announced again)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from attribution import events_out
from attribution.attributor import Attributor
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders, insert_clicks

HOUR, DAY = 3_600_000, 86_400_000
T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
SHOES = ("SKU-1", "shoes", 5990, 2)


@pytest.fixture(
    params=[
        pytest.param("clickhouse", marks=[pytest.mark.clickhouse, pytest.mark.redis]),
        pytest.param("chdb", marks=[pytest.mark.chdb, pytest.mark.redis]),
    ]
)
def backend(request, redis_client):
    chosen = request.getfixturevalue("clickhouse" if request.param == "clickhouse" else "chdb_backend")
    migrate(chosen, log=lambda *_: None)
    return chosen


async def emitted(redis: Redis, keys: Keys) -> list[events_out.Event]:
    return [events_out.decode(fields[b"e"]) for _, fields in await redis.xrange(keys.events)]


def test_commission_events_once_per_booking_with_crash_recovery(settings, backend):
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY)
        clicks = {order: ids.new(T0 + i) for i, order in enumerate(["A-1", "A-2", "A-3"])}
        insert_clicks(
            backend,
            [(c, T0 + i, "alice", "m1", "shop.m1.example", 0, 0) for i, c in enumerate(clicks.values())],
        )
        at = T0 + HOUR
        await deliver(r, keys, "m1", "w1", "order.created", "A-1", clicks["A-1"], at, [SHOES])
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        attributor = Attributor(r, keys, backend, ids)

        assert (await attributor.run_once(now_ms=T0 + 2 * HOUR)).events == 1
        [booked] = await emitted(r, keys)
        assert booked.type == "commission.booked" and booked.subjects == ("creator:alice", "merchant:m1")
        assert booked.data["order_id"] == "A-1" and booked.data["amount_minor"] == 958  # 5990×2×8 %
        assert booked.data["status"] == "pending" and len(booked.data["lines"]) == 1
        assert (await attributor.run_once(now_ms=T0 + 3 * HOUR)).events == 0  # books nothing, emits nothing

        await deliver(
            r, keys, "m1", "w1r", "order.refunded", "A-1", clicks["A-1"], at + HOUR, [(*SHOES[:3], 1)]
        )
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        assert (await attributor.run_once(now_ms=T0 + 4 * HOUR)).events == 1
        reversed_ = (await emitted(r, keys))[-1]
        assert reversed_.type == "commission.reversed" and reversed_.data["amount_minor"] == -479

        # A crash after the insert, before the emit: the rows are stored, the event only staged.
        await deliver(r, keys, "m1", "w2", "order.created", "A-2", clicks["A-2"], at, [SHOES])
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        crashing = Attributor(r, keys, backend, ids)
        real_emit = crashing._outbox.emit

        async def crash(*args, **kwargs):
            raise RuntimeError("killed between insert and emit")

        crashing._outbox.emit = crash
        with pytest.raises(RuntimeError):
            await crashing.run_once(now_ms=T0 + 5 * HOUR)
        crashing._outbox.emit = real_emit
        [staged] = await crashing._outbox.staged()
        assert staged.data["order_id"] == "A-2"
        await r.delete(keys.attribution_lock)  # the failed run's hold on the lock, expired
        summary = await attributor.run_once(now_ms=T0 + 6 * HOUR)
        assert summary.rows == 0 and await crashing._outbox.staged() == []
        assert [e.id for e in await emitted(r, keys)].count(staged.id) == 1

        # A crash before the insert landed: the staged event is dropped, the rows booked and announced anew.
        await deliver(r, keys, "m1", "w3", "order.created", "A-3", clicks["A-3"], at, [SHOES])
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        failing = Attributor(r, keys, backend, ids)
        real_insert = backend.insert

        def lost_insert(*args, **kwargs):
            raise RuntimeError("the insert never reached ClickHouse")

        backend.insert = lost_insert
        try:
            with pytest.raises(RuntimeError):
                await failing.run_once(now_ms=T0 + 7 * HOUR)
        finally:
            backend.insert = real_insert
        [never] = await failing._outbox.staged()
        await r.delete(keys.attribution_lock)
        summary = await attributor.run_once(now_ms=T0 + 8 * HOUR)
        assert summary.rows == 1 and summary.events == 1
        events = await emitted(r, keys)
        assert never.id not in {e.id for e in events}
        assert [e.data["order_id"] for e in events if e.type == "commission.booked"] == ["A-1", "A-2", "A-3"]

        # After the lock period: the approval transfer is announced once, with the approved amount.
        summary = await attributor.run_once(now_ms=at + 31 * DAY)
        approved = [e for e in await emitted(r, keys) if e.type == "commission.approved"]
        assert summary.events == 3 and sorted(e.data["amount_minor"] for e in approved) == [479, 958, 958]
        assert all(e.data["status"] == "approved" for e in approved)
        assert (await attributor.run_once(now_ms=at + 32 * DAY)).events == 0
        await r.aclose()

    asyncio.run(scenario())
