"""A run booked in lanes (attribution/lanes.py: `CLICKTRAIL_ATTRIBUTION_WORKERS` > 1), with real worker
processes over their own connections to ClickHouse 18.16 and Redis: the same ledger and the same events
as one process books, nothing twice on a rerun, a stop that reaches the workers, and a lane that fails
failing the run without booking anything twice afterwards. (Lanes need a server: each worker connects
to it, so chdb, in process, has none.)"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator
from concurrent.futures.process import BrokenProcessPool

import pytest
from redis.asyncio import Redis

from attribution import collector
from attribution.attributor import FAILED_RUN_HOLD_MS, Attributor
from attribution.commands import lane_attributor
from attribution.lanes import Lanes
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from core.settings import Settings
from tests.integration.attributionhelp import deliver, ingest_orders
from tests.integration.test_attribution_overlap import (
    DAY,
    HOUR,
    ORDERS,
    SHOES,
    T0,
    Recording,
    booked_orders,
    emitted_orders,
    orders_on_six_days,
)

pytestmark = [pytest.mark.clickhouse, pytest.mark.redis]
NOW = T0 + 7 * DAY
# The ledger's columns that do not name the run that booked them.
LEDGER = "order_id, entry_id, kind, status, amount_minor, creator_id, click_id, sku, rate_bps, event_id"


@pytest.fixture
def backend(clickhouse, redis_client):
    migrate(clickhouse, log=lambda *_: None)
    return clickhouse


@contextlib.asynccontextmanager
async def failing_lane(settings: Settings, lost_order: str) -> AsyncIterator[Attributor]:
    """A worker's attributor whose insert of `lost_order`'s rows fails, as when the server dies."""
    async with lane_attributor(settings) as attributor:
        attributor._backend = Recording(attributor._backend, lost_order=lost_order)
        yield attributor


class _Dying(Recording):
    """A worker's ClickHouse whose insert of `lost_order`'s rows ends the worker's process at once, as
    an out-of-memory kill would; its other inserts take `insert_s`."""

    def insert(self, table, columns, data):
        if self._lost_order in data[list(columns).index("order_id")]:
            os._exit(3)
        return super().insert(table, columns, data)


@contextlib.asynccontextmanager
async def dying_lane(settings: Settings, lost_order: str) -> AsyncIterator[Attributor]:
    async with lane_attributor(settings) as attributor:
        attributor._backend = _Dying(attributor._backend, insert_s=0.3, lost_order=lost_order)
        yield attributor


def with_orders(settings: Settings, backend, body, refund: str = "") -> None:
    """`body(redis, keys, ids)` over six orders on six days (one chunk each), `refund` refunded."""
    keys, ids = Keys(settings.redis_prefix), ClickIds(settings.secret_bytes)

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        try:
            await orders_on_six_days(settings, backend, r, keys, ids)
            if refund:
                n = int(refund.split("-")[1])
                click_id = backend.execute(
                    f"SELECT click_id FROM {backend.database}.order_events WHERE order_id = %(o)s",
                    {"o": refund},
                )[0][0]
                at = T0 + n * DAY + 2 * HOUR
                await deliver(r, keys, "m1", f"w{n}r", "order.refunded", refund, click_id, at, [SHOES])
                await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)
            await body(r, keys, ids)
        finally:
            await r.aclose()

    asyncio.run(scenario())


def ledger(backend) -> list[tuple]:
    return backend.execute(f"SELECT {LEDGER} FROM {backend.database}.commissions ORDER BY {LEDGER}")


def test_lanes_book_the_ledger_and_events_one_process_books(settings, backend) -> None:
    lanes = Lanes(functools.partial(lane_attributor, settings), 2)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        # chunk=1: one order a chunk, dealt to the lanes in turn (one process only deals; it books lane 0)
        summary = await Attributor(r, keys, backend, ids, chunk=1, lanes=lanes).run_once(now_ms=NOW)
        assert (summary.orders, summary.outcomes["credited"], summary.stopped) == (ORDERS, ORDERS, False)
        assert lanes._pool is not None  # the worker was started: its lane's summary is in these counts
        assert summary.rows == summary.kinds["accrual"] + summary.kinds["reversal"] == ORDERS + 1
        assert booked_orders(backend) == [(f"A-{n}", 2 if n == 3 else 1) for n in range(ORDERS)]
        in_lanes = ledger(backend)
        events = await emitted_orders(r, keys)
        assert events == sorted([f"A-{n}" for n in range(ORDERS)] + ["A-3"])  # each booking once
        assert await r.get(keys.attribution_cursor) is not None
        assert await r.get(keys.attribution_lock) is None
        again = await Attributor(r, keys, backend, ids, chunk=1, lanes=lanes).run_once(now_ms=NOW)
        assert (again.orders, again.rows, again.events) == (ORDERS, 0, 0)

        # the same run in one process, from scratch: the same rows, the same events
        backend.execute(f"TRUNCATE TABLE {backend.database}.commissions")
        await r.delete(keys.attribution_cursor, keys.events)
        await r.delete(*[key async for key in r.scan_iter(match=keys.event_seen("*"))])
        alone = await Attributor(r, keys, backend, ids, chunk=1).run_once(now_ms=NOW)
        assert (alone.rows, alone.events, alone.amount_minor) == (
            summary.rows,
            summary.events,
            summary.amount_minor,
        )
        assert ledger(backend) == in_lanes
        assert await emitted_orders(r, keys) == events

    try:
        with_orders(settings, backend, body, refund="A-3")
    finally:
        lanes.close()


def test_the_runs_progress_counts_the_workers_lanes(settings, backend) -> None:
    lanes = Lanes(functools.partial(lane_attributor, settings), 3)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        reports: list[tuple[int, int]] = []
        attributor = Attributor(r, keys, backend, ids, chunk=1, lanes=lanes)
        summary = await attributor.run_once(
            now_ms=NOW, progress=lambda done, total: reports.append((done, total))
        )
        assert summary.orders == ORDERS
        # the run's own lane booked 2 of the 6 orders: its reports count the workers' 4 as well
        assert reports[-1] == (ORDERS, ORDERS), reports
        assert all(total == ORDERS and 0 < done <= ORDERS for done, total in reports), reports
        assert [done for done, _ in reports] == sorted(done for done, _ in reports), reports

    try:
        with_orders(settings, backend, body)
    finally:
        lanes.close()


def test_a_stop_reaches_the_workers_and_the_next_run_books_the_rest_once(settings, backend) -> None:
    lanes = Lanes(functools.partial(lane_attributor, settings), 2)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        stop = asyncio.Event()
        stop.set()  # as a SIGTERM would before the run's first chunk is booked
        attributor = Attributor(r, keys, backend, ids, chunk=1, lanes=lanes)
        summary = await attributor.run_once(now_ms=NOW, stop=stop)
        # each lane ended after its chunk in hand: A-0 here, A-1 in the worker
        assert summary.stopped and summary.orders == 2
        assert booked_orders(backend) == [("A-0", 1), ("A-1", 1)]
        assert await emitted_orders(r, keys) == ["A-0", "A-1"]
        assert await r.get(keys.attribution_cursor) is None
        assert await r.get(keys.attribution_lock) is None

        summary = await attributor.run_once(now_ms=NOW)
        assert not summary.stopped and summary.rows == ORDERS - 2
        assert booked_orders(backend) == [(f"A-{n}", 1) for n in range(ORDERS)]
        assert await emitted_orders(r, keys) == [f"A-{n}" for n in range(ORDERS)]

    try:
        with_orders(settings, backend, body)
    finally:
        lanes.close()


@pytest.mark.parametrize("lost", ["A-1", "A-3"])
def test_a_failing_lane_fails_the_run_and_the_next_run_books_each_order_once(settings, backend, lost) -> None:
    failing = Lanes(functools.partial(failing_lane, settings, lost), 2)
    lanes = Lanes(functools.partial(lane_attributor, settings), 2)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        with pytest.raises(ConnectionError):
            await Attributor(r, keys, backend, ids, chunk=1, lanes=failing).run_once(now_ms=NOW)
        landed = dict(booked_orders(backend))
        # the run's own lane went on to its end; the worker's stopped at the lost insert
        # (the worker's next chunk may have been written beside the lost one: WRITES_IN_FLIGHT)
        assert {"A-0", "A-2", "A-4"} <= set(landed) and lost not in landed and set(landed.values()) == {1}
        assert FAILED_RUN_HOLD_MS - 10_000 < await r.pttl(keys.attribution_lock) <= FAILED_RUN_HOLD_MS
        assert await r.get(keys.attribution_cursor) is None
        await r.delete(keys.attribution_lock)  # the failed run's hold, expired

        summary = await Attributor(r, keys, backend, ids, chunk=1, lanes=lanes).run_once(now_ms=NOW)
        assert summary.rows == ORDERS - len(landed)
        assert booked_orders(backend) == [(f"A-{n}", 1) for n in range(ORDERS)]
        assert await emitted_orders(r, keys) == [f"A-{n}" for n in range(ORDERS)]  # each booking once

    try:
        with_orders(settings, backend, body)
    finally:
        failing.close()
        lanes.close()


def test_a_worker_that_dies_fails_the_run_only_once_the_other_lanes_have_stopped(settings, backend) -> None:
    """Its pool fails every lane at once, while the other worker may be inside a lane: the run fails
    only once that lane has stopped after its chunk in hand, so nothing lands after it has failed."""
    dying = Lanes(functools.partial(dying_lane, settings, "A-1"), 3)
    lanes = Lanes(functools.partial(lane_attributor, settings), 3)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        with pytest.raises(BrokenProcessPool):
            await Attributor(r, keys, backend, ids, chunk=1, lanes=dying).run_once(now_ms=NOW)
        landed = booked_orders(backend)
        await asyncio.sleep(1.0)  # longer than the slow worker's insert: a write still running would land
        assert booked_orders(backend) == landed
        assert "A-1" not in dict(landed) and set(dict(landed).values()) == {1}
        assert FAILED_RUN_HOLD_MS - 10_000 < await r.pttl(keys.attribution_lock) <= FAILED_RUN_HOLD_MS
        await r.delete(keys.attribution_lock)

        summary = await Attributor(r, keys, backend, ids, chunk=1, lanes=lanes).run_once(now_ms=NOW)
        assert summary.rows == ORDERS - len(landed)
        assert booked_orders(backend) == [(f"A-{n}", 1) for n in range(ORDERS)]
        assert await emitted_orders(r, keys) == [f"A-{n}" for n in range(ORDERS)]

    try:
        with_orders(settings, backend, body)
    finally:
        dying.close()
        lanes.close()


def test_a_worker_that_died_between_runs_is_replaced(settings, backend) -> None:
    lanes = Lanes(functools.partial(lane_attributor, settings), 2)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        lanes.start()
        [worker] = list(lanes._pool._processes.values())
        worker.kill()
        worker.join(5)
        await asyncio.sleep(0.2)  # the pool notices: it is broken before the run submits
        summary = await Attributor(r, keys, backend, ids, chunk=1, lanes=lanes).run_once(now_ms=NOW)
        assert summary.rows == ORDERS and not summary.stopped
        assert booked_orders(backend) == [(f"A-{n}", 1) for n in range(ORDERS)]

    try:
        with_orders(settings, backend, body)
    finally:
        lanes.close()


def test_a_run_with_lanes_and_no_more_than_a_chunk_books_in_its_own_process(settings, backend) -> None:
    """Six orders and chunks of 5,000: nothing to deal, no worker started."""
    lanes = Lanes(functools.partial(lane_attributor, settings), 2)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        summary = await Attributor(r, keys, backend, ids, lanes=lanes).run_once(now_ms=NOW)
        assert summary.rows == ORDERS and lanes._pool is None

    try:
        with_orders(settings, backend, body)
    finally:
        lanes.close()


def test_a_lane_holds_full_collections_as_a_run_does(settings, backend) -> None:
    """A worker's lane holds its orders' events and ledger as a run does: without the hold, full
    collections would walk that working set again and again (attribution/collector.py)."""

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        attributor = Attributor(r, keys, backend, ids)
        held: list[int] = []
        book_orders = attributor._book_orders

        async def holding_book_orders(*args):
            held.append(collector.holding())
            return await book_orders(*args)

        attributor._book_orders = holding_book_orders
        terms = await attributor._terms("m1")
        summary = await attributor.book_lane(terms, ["A-0", "A-1"], NOW, "lane", None)
        assert (summary.orders, summary.rows, summary.stopped) == (2, 2, False)
        assert held == [1] and collector.holding() == 0
        assert booked_orders(backend) == [("A-0", 1), ("A-1", 1)]
        assert await r.get(keys.attribution_cursor) is None  # a lane moves no cursor

    with_orders(settings, backend, body)


@pytest.mark.parametrize("workers", [0, 1, 17])
def test_lanes_refuse_a_count_they_cannot_use(settings, workers) -> None:
    with pytest.raises(ValueError, match="2 to 16"):
        Lanes(functools.partial(lane_attributor, settings), workers)
