"""Commission events from the attributor, on ClickHouse 18.16 and current ClickHouse (chdb): one event
per booked row group, none on a rerun, and the crash between booking and emitting recovered (the
staged events of rows that landed are emitted once; those of rows that did not are dropped and the
rows booked and announced again)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from unittest import mock

import pytest
from redis.asyncio import Redis
from standardwebhooks import Webhook

from attribution import events_out
from attribution.attributor import Attributor
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders, insert_clicks
from tests.integration.receivers import Receiver, fast, running_deliverer
from tests.integration.test_webhooks import MERCHANT

HOUR, DAY = 3_600_000, 86_400_000
T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
SHOES = ("SKU-1", "shoes", 5990, 2)


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
        [staged] = (await crashing._outbox.staged()).events
        assert staged.data["order_id"] == "A-2"
        await r.delete(keys.attribution_lock)  # the failed run's hold on the lock, expired
        summary = await attributor.run_once(now_ms=T0 + 6 * HOUR)
        assert summary.rows == 0 and await crashing._outbox.staged() == ([], [], 0)
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
        [never] = (await failing._outbox.staged()).events
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


def test_a_staged_event_that_does_not_decode_blocks_no_run(settings, backend):
    """A staged value this release cannot read (staged by another one, or damaged): every run used to fail
    on it before booking anything. It goes to the event dead letters as it came, once, and is counted; the
    staged events around it are announced as before."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY)
        click = ids.new(T0)
        insert_clicks(backend, [(click, T0, "alice", "m1", "shop.m1.example", 0, 0)])
        await deliver(r, keys, "m1", "w1", "order.created", "A-1", click, T0 + HOUR, [SHOES])
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        event = (
            b'{"id": "evt_old", "type": "commission.accrued", "subjects": [], "occurred_ms": 1, "data": %s}'
        )
        unreadable = {
            b"evt_bad_json": b"{not json",
            b"evt_wrong_shape": b'{"id": 7}',
            b"evt_empty": b"",
            # An event, but not one this release staged: the ids a run groups staged events by are missing.
            b"evt_no_ids": event % b"{}",
            b"evt_id_not_text": event % b'{"merchant_id": 1, "run_id": "r", "order_id": "A-9"}',
            # filed under another id than its own: unstaged by its id, it stayed and was read every run
            b"evt_filed_elsewhere": event % b'{"merchant_id": "m1", "run_id": "r", "order_id": "A-9"}',
            # a chunk's value (this release's layout) that is not an array of such events
            b"chunk:evt_bad_json": b"[{not json",
            b"chunk:evt_not_array": event % b'{"merchant_id": "m1", "run_id": "r", "order_id": "A-9"}',
            b"chunk:evt_one_without_ids": b"[%s,%s]"
            % (event % b'{"merchant_id": "m1", "run_id": "r", "order_id": "A-9"}', event % b"{}"),
        }
        await r.hset(keys.events_staged, mapping=unreadable)
        attributor = Attributor(r, keys, backend, ids)
        summary = await attributor.run_once(now_ms=T0 + 2 * HOUR)
        assert summary.staged_dead_lettered == len(unreadable) and summary.rows == 1 and summary.events == 1
        dead = {f[b"dead_staged"]: (f[b"e"], f[b"dead_reason"]) for _, f in await r.xrange(keys.events_dead)}
        assert dead == {k: (v, b"undecodable_staged") for k, v in unreadable.items()}
        assert await r.hlen(keys.events_staged) == 0
        assert await r.hget(keys.attribution_stats, "dead:undecodable_staged") == b"%d" % len(unreadable)
        again = await attributor.run_once(now_ms=T0 + 3 * HOUR)
        assert again.staged_dead_lettered == 0 and await r.xlen(keys.events_dead) == len(unreadable)
        await r.aclose()

    asyncio.run(scenario())


def test_events_staged_by_an_earlier_release_one_field_each_are_announced(settings, backend):
    """Earlier releases staged one field per event (event id → event); a run of this one, after a crash
    of theirs between insert and emit, announces those whose rows are stored, once, and unstages them."""
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY)
        clicks = [ids.new(T0 + i) for i in range(2)]
        insert_clicks(
            backend, [(c, T0 + i, "alice", "m1", "shop.m1.example", 0, 0) for i, c in enumerate(clicks)]
        )
        for n, click in enumerate(clicks):
            await deliver(r, keys, "m1", f"w{n}", "order.created", f"A-{n}", click, T0 + HOUR, [SHOES])
        await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
        crashing = Attributor(r, keys, backend, ids)

        async def crash(*args, **kwargs):
            raise RuntimeError("killed between insert and emit")

        crashing._outbox.emit = crash
        with pytest.raises(RuntimeError):
            await crashing.run_once(now_ms=T0 + 2 * HOUR)
        staged = await crashing._outbox.staged()
        assert len(staged.events) == 2 and len(staged.fields) == 1  # one chunk, one field
        # The same events, as the earlier layout held them.
        await r.delete(keys.events_staged)
        await r.hset(keys.events_staged, mapping={e.id: events_out.encode(e) for e in staged.events})
        await r.delete(keys.attribution_lock)
        summary = await Attributor(r, keys, backend, ids).run_once(now_ms=T0 + 3 * HOUR)
        assert summary.rows == 0 and summary.staged_dead_lettered == 0
        assert sorted(e.id for e in await emitted(r, keys)) == sorted(e.id for e in staged.events)
        assert await r.hlen(keys.events_staged) == 0
        await r.aclose()

    asyncio.run(scenario())


def test_staged_dead_letters_are_counted_when_the_run_fails_afterwards(settings, backend):
    """The count is added in the transaction that moves them: a run that fails after its staged step
    has moved them for good, and they are counted, not lost from the statistics."""
    keys = Keys(settings.redis_prefix)

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await r.hset(keys.events_staged, mapping={b"evt_a": b"{not json", b"evt_b": b""})
        attributor = Attributor(r, keys, backend, ClickIds(settings.secret_bytes))
        failing = mock.patch(
            "attribution.attributor.queries.orders_with_new_events",
            side_effect=RuntimeError("ClickHouse away"),
        )
        with failing, pytest.raises(RuntimeError):
            await attributor.run_once(now_ms=T0)
        assert await r.hget(keys.attribution_stats, "dead:undecodable_staged") == b"2"
        assert await r.xlen(keys.events_dead) == 2 and await r.hlen(keys.events_staged) == 0
        await r.aclose()

    asyncio.run(scenario())


@pytest.mark.clickhouse
def test_a_booked_commission_reaches_creator_and_merchant_endpoints(settings, redis_client, clickhouse):
    """From the order webhook to the endpoints: the creator's and the merchant's receivers each get the
    signed commission.booked of the order (verified with `standardwebhooks`); a third owner's does not."""
    migrate(clickhouse, log=lambda *_: None)
    settings = fast(settings)
    keys = Keys(settings.redis_prefix)
    ids = ClickIds(settings.secret_bytes)

    async def scenario():
        receivers = [await Receiver().start() for _ in range(3)]
        try:
            async with running_app(settings) as (_, client):
                merchant = {**MERCHANT, "domains": ["shop.m1.example"], "merchant_id": "m1"}
                assert (await client.post("/api/merchants", json=merchant, headers=ADMIN)).status_code == 201
                secrets = []
                owners = [("creator_id", "alice"), ("merchant_id", "m1"), ("creator_id", "bob")]
                for receiver, (field, who) in zip(receivers, owners, strict=True):
                    body = {"url": receiver.url, "events": ["commission.booked"], field: who}
                    created = await client.post("/api/endpoints", json=body, headers=ADMIN)
                    secrets.append(created.json()["secret"])
            r = Redis.from_url(settings.redis_url)
            click = ids.new(T0)
            insert_clicks(clickhouse, [(click, T0, "alice", "m1", "shop.m1.example", 0, 0)])
            await deliver(r, keys, "m1", "w1", "order.created", "A-1", click, T0 + HOUR, [SHOES])
            await asyncio.to_thread(ingest_orders, settings.redis_url, keys, clickhouse)
            assert (await Attributor(r, keys, clickhouse, ids).run_once(now_ms=T0 + 2 * HOUR)).events == 1
            await r.aclose()
            async with running_deliverer(settings):
                await receivers[0].wait_for(1)
                await receivers[1].wait_for(1)
                await asyncio.sleep(0.2)
            for receiver, secret in zip(receivers[:2], secrets[:2], strict=True):
                request = receiver.requests[0]
                event = Webhook(secret).verify(request.body, request.headers)
                assert event["type"] == "commission.booked" and event["data"]["amount_minor"] == 958
            assert receivers[0].ids() == receivers[1].ids() and receivers[2].requests == []
        finally:
            for receiver in receivers:
                await receiver.close()

    asyncio.run(scenario())
