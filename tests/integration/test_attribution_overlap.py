"""The attributor overlaps a chunk's rules with the next chunk's reads and the writes of the chunks before
(attributor.py `_book_chunks`). On ClickHouse 18.16 and current ClickHouse (chdb): the reads really run
while an insert is in flight; an insert that fails mid-run leaves nothing running once the run has
failed, and the next run books every order once and announces each booking once; a stop ends after the
chunk in hand with its write done; and NativeClickHouse runs two callers' queries at once."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from attribution import events_out
from attribution.attributor import FAILED_RUN_HOLD_MS, Attributor
from core.clickhouse import NativeClickHouse
from core.clickid import ClickIds
from core.keys import Keys
from tests.integration.attributionhelp import add_merchant, deliver, ingest_orders, insert_clicks

HOUR, DAY = 3_600_000, 86_400_000
T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
ORDERS = 6
SHOES = ("SKU-1", "shoes", 5990, 2)


class Recording:
    """The test's ClickHouse, recording when each insert and each read ran; an insert sleeps `insert_s`,
    and the insert of `lost_order`'s rows raises, as when the server dies mid-run (by order, not by call:
    two chunks' writes may reach their inserts in either order)."""

    def __init__(self, real, insert_s: float = 0.0, lost_order: str = "") -> None:
        self._real = real
        self.database = real.database
        self.ships_id_sets = real.ships_id_sets
        self._insert_s = insert_s
        self._lost_order = lost_order
        self._lock = threading.Lock()
        self.inserts: list[tuple[float, float]] = []  # (start, end) of each insert that returned
        self.insert_calls = 0
        self.reads: list[float] = []  # start of each click read

    def execute(self, sql, params=None):
        if "FROM" in sql and ".clicks " in sql:
            with self._lock:
                self.reads.append(time.monotonic())
        return self._real.execute(sql, params)

    def insert(self, table, columns, data):
        with self._lock:
            self.insert_calls += 1
        started = time.monotonic()
        time.sleep(self._insert_s)
        if self._lost_order and self._lost_order in data[list(columns).index("order_id")]:
            raise ConnectionError("insert lost")
        done = self._real.insert(table, columns, data)
        with self._lock:
            self.inserts.append((started, time.monotonic()))
        return done

    def settle_failed_inserts(self) -> None:
        pass

    def settle_unknown_parts(self) -> None:
        pass


async def orders_on_six_days(settings, backend, r: Redis, keys: Keys, ids: ClickIds) -> None:
    """ORDERS orders, each with a click on a day of its own: one chunk each (chunks never span days)."""
    await add_merchant(r, keys, "m1", ["shop.m1.example"], T0 - DAY)
    clicks = [ids.new(T0 + n * DAY) for n in range(ORDERS)]
    insert_clicks(
        backend, [(c, T0 + n * DAY, "alice", "m1", "shop.m1.example", 0, 0) for n, c in enumerate(clicks)]
    )
    for n, click_id in enumerate(clicks):
        await deliver(
            r, keys, "m1", f"w{n}", "order.created", f"A-{n}", click_id, T0 + n * DAY + HOUR, [SHOES]
        )
    await asyncio.to_thread(ingest_orders, settings.redis_url, keys, backend)


def with_six_orders(settings, backend, body) -> None:
    """`body(redis, keys, ids)` run against orders_on_six_days, on the test's Redis prefix."""
    keys, ids = Keys(settings.redis_prefix), ClickIds(settings.secret_bytes)

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        try:
            await orders_on_six_days(settings, backend, r, keys, ids)
            await body(r, keys, ids)
        finally:
            await r.aclose()

    asyncio.run(scenario())


def booked_orders(backend) -> list[tuple[str, int]]:
    rows = backend.execute(
        f"SELECT order_id, count() FROM {backend.database}.commissions GROUP BY order_id ORDER BY order_id"
    )
    return [(o, int(n)) for o, n in rows]


async def emitted_orders(r: Redis, keys: Keys) -> list[str]:
    return sorted(events_out.decode(f[b"e"]).data["order_id"] for _, f in await r.xrange(keys.events))


def test_the_next_chunks_clicks_are_read_while_an_insert_is_in_flight(settings, backend) -> None:
    recording = Recording(backend, insert_s=0.3)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        summary = await Attributor(r, keys, recording, ids).run_once(now_ms=T0 + 7 * DAY)
        assert summary.outcomes["credited"] == ORDERS and len(recording.inserts) == ORDERS
        # a click read started inside some insert's span: the reads did not wait for the writes
        assert any(start < read < end for start, end in recording.inserts for read in recording.reads)
        # two inserts overlap (WRITES_IN_FLIGHT): one chunk's Redis work goes on beside another's insert
        spans = sorted(recording.inserts)
        assert any(b_start < a_end for (_, a_end), (b_start, _) in itertools.pairwise(spans))
        assert await emitted_orders(r, keys) == [f"A-{n}" for n in range(ORDERS)]

    with_six_orders(settings, backend, body)


def test_the_next_chunks_read_is_under_way_before_a_chunks_rules_run(settings, backend) -> None:
    """The rules hold the event loop: the next chunk's click read must be sent before they start, or
    it waits for them."""

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        attributor = Attributor(r, keys, backend, ids)
        steps: list[tuple[str, str]] = []  # (step, the chunk's click id): one order and click a chunk
        real_book, real_facts = attributor._book, attributor._clicks.facts

        def book(booking, order_ids, *args):
            [order_id] = order_ids
            steps.append(("book", booking.folds[order_id].created.click_id))
            return real_book(booking, order_ids, *args)

        async def click_facts(click_ids, *args, **kwargs):
            [click_id] = click_ids
            steps.append(("read", click_id))
            return await real_facts(click_ids, *args, **kwargs)

        attributor._book, attributor._clicks.facts = book, click_facts
        await attributor.run_once(now_ms=T0 + 7 * DAY)
        booked = [click_id for step, click_id in steps if step == "book"]
        assert len(booked) == ORDERS
        for this, following in itertools.pairwise(booked):  # the next chunk's read, then this one's rules
            assert steps.index(("read", following)) < steps.index(("book", this)), steps

    with_six_orders(settings, backend, body)


@pytest.mark.parametrize("lost", [0, 1, 3, ORDERS - 1])
def test_an_insert_lost_mid_run_leaves_nothing_running_and_the_next_run_books_each_order_once(
    settings, backend, lost
) -> None:
    failing = Recording(backend, insert_s=0.05, lost_order=f"A-{lost}")

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        with pytest.raises(ConnectionError):
            await Attributor(r, keys, failing, ids).run_once(now_ms=T0 + 7 * DAY)
        calls, landed = failing.insert_calls, booked_orders(backend)
        await asyncio.sleep(0.3)  # longer than an insert: any write still running would land meanwhile
        assert (failing.insert_calls, booked_orders(backend)) == (calls, landed)
        assert all(n == 1 for _, n in landed) and f"A-{lost}" not in dict(landed)
        assert FAILED_RUN_HOLD_MS - 10_000 < await r.pttl(keys.attribution_lock) <= FAILED_RUN_HOLD_MS
        await r.delete(keys.attribution_lock)  # the failed run's hold, expired

        summary = await Attributor(r, keys, backend, ids).run_once(now_ms=T0 + 7 * DAY)
        assert summary.rows == ORDERS - len(landed)
        assert booked_orders(backend) == [(f"A-{n}", 1) for n in range(ORDERS)]
        assert await emitted_orders(r, keys) == [f"A-{n}" for n in range(ORDERS)]  # each booking once

    with_six_orders(settings, backend, body)


def test_a_stop_ends_after_the_chunk_in_hand_with_its_write_done(settings, backend) -> None:
    slow = Recording(backend, insert_s=0.1)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        stop = asyncio.Event()

        def progress(done: int, total: int) -> None:
            if done == 2:
                stop.set()  # as a SIGTERM would while the second chunk is booked

        summary = await Attributor(r, keys, slow, ids).run_once(
            now_ms=T0 + 7 * DAY, progress=progress, stop=stop
        )
        assert summary.stopped and summary.orders == 2
        assert booked_orders(backend) == [("A-0", 1), ("A-1", 1)]  # both chunks' writes done, no more
        assert await emitted_orders(r, keys) == ["A-0", "A-1"]
        assert await r.get(keys.attribution_cursor) is None  # the cursor did not move
        assert await r.get(keys.attribution_lock) is None

        summary = await Attributor(r, keys, backend, ids).run_once(now_ms=T0 + 7 * DAY)
        assert not summary.stopped and summary.rows == ORDERS - 2
        assert booked_orders(backend) == [(f"A-{n}", 1) for n in range(ORDERS)]

    with_six_orders(settings, backend, body)


def test_every_chunks_events_are_counted_when_their_emissions_overlap(settings, backend) -> None:
    """Two chunks' writes emit at the same time: the run's count of emitted events misses none."""

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        attributor = Attributor(r, keys, backend, ids)
        real_emit = attributor._outbox.emit

        async def slow_emit(*args, **kwargs):
            await asyncio.sleep(0.2)  # longer than a chunk's rules and insert: the next emit overlaps
            return await real_emit(*args, **kwargs)

        attributor._outbox.emit = slow_emit
        summary = await attributor.run_once(now_ms=T0 + 7 * DAY)
        assert summary.events == summary.rows == ORDERS
        assert await emitted_orders(r, keys) == [f"A-{n}" for n in range(ORDERS)]

    with_six_orders(settings, backend, body)


def test_a_cancelled_run_finishes_the_writes_it_started(settings, backend) -> None:
    """Cancelling a run (its task, as a shutdown would) never stops a write between its insert and its
    emission: once the cancellation is raised, nothing of the run runs and no event is left staged."""
    slow = Recording(backend, insert_s=0.2)

    async def body(r: Redis, keys: Keys, ids: ClickIds) -> None:
        attributor = Attributor(r, keys, slow, ids)
        run: asyncio.Task | None = None

        def progress(done: int, total: int) -> None:
            if done == 3 and run is not None:
                # shortly after: the run then waits for the second chunk's write (inserts take 0.2 s)
                asyncio.get_running_loop().call_later(0.05, run.cancel)

        run = asyncio.ensure_future(attributor.run_once(now_ms=T0 + 7 * DAY, progress=progress))
        with pytest.raises(asyncio.CancelledError):
            await run
        calls, landed = slow.insert_calls, booked_orders(backend)
        await asyncio.sleep(0.5)  # longer than an insert: a write still running would land meanwhile
        assert (slow.insert_calls, booked_orders(backend)) == (calls, landed)
        assert len(landed) >= 2 and all(n == 1 for _, n in landed)
        assert await attributor._outbox.staged() == ([], [], 0)
        assert await emitted_orders(r, keys) == [order for order, _ in landed]

    with_six_orders(settings, backend, body)


def test_native_clickhouse_with_standby_hosts_keeps_one_connection(settings) -> None:
    """Each driver connection fails over on its own: two could read and write on different servers."""
    backend = NativeClickHouse(settings.clickhouse_url, alt_hosts=["127.0.0.1:9000"])
    assert len(backend._clients) == 1
    assert backend.execute("SELECT 1") == [(1,)]
    backend.close()
    assert len(NativeClickHouse(settings.clickhouse_url + "?alt_hosts=127.0.0.1:9000")._clients) == 1


def test_native_clickhouse_runs_two_callers_queries_at_once(clickhouse) -> None:
    """One caller's long query does not hold up another's: the second runs while the first is still on
    the server (with one connection it would wait, and find the first finished)."""
    started = threading.Event()

    def long_query() -> None:
        started.set()
        clickhouse.execute("SELECT sleep(2), 'ct-overlap-probe'")

    worker = threading.Thread(target=long_query)
    worker.start()
    started.wait()
    running = 0
    deadline = time.monotonic() + 1.5
    while not running and time.monotonic() < deadline:  # until the first query reaches the server
        running = clickhouse.execute(
            "SELECT count() FROM system.processes "
            "WHERE query LIKE '%%ct-overlap-probe%%' AND query NOT LIKE '%%system.processes%%'"
        )[0][0]
    worker.join()
    assert running == 1


def test_native_clickhouse_closes_every_connection(settings) -> None:
    backend = NativeClickHouse(settings.clickhouse_url)
    both = threading.Barrier(2)

    def query() -> None:
        both.wait()
        backend.execute("SELECT sleep(0.5)")

    threads = [threading.Thread(target=query) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(c.connection.connected for c in backend._clients)
    backend.close()
    assert not any(c.connection.connected for c in backend._clients)
    assert backend.execute("SELECT 1") == [(1,)]  # a later call connects again


def test_native_clickhouse_opens_its_second_connection_only_for_overlapping_calls(settings) -> None:
    backend = NativeClickHouse(settings.clickhouse_url)
    for _ in range(5):
        backend.execute("SELECT 1")
    assert sum(c.connection.connected for c in backend._clients) == 1  # calls in turn reuse one
    backend.close()
