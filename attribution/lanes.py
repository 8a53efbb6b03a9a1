"""A run's orders booked in several processes at once (`CLICKTRAIL_ATTRIBUTION_WORKERS`).

One attributor run books every order on one event-loop thread: its rules, its events, the decoding of
what it reads and the packing of what it writes share one interpreter lock. At 50 M clicks that thread
was busy 4-5 s of a 6-7 s run while the second core was half idle (docs/performance.md). With N workers
a merchant's orders are dealt into N lanes of whole click-day chunks (`deal`), so that each lane reads
its own days of clicks and no day is read twice more than before; the attributor books lane 0 itself and
N-1 worker processes book the others, each the way a run books its orders (its events and stored ledger
read, its chunks booked, staged, inserted and announced), over Redis and ClickHouse connections of its
own. The lanes hold disjoint orders, and the ledger is a difference per order, so they cannot book the
same row twice. Only the run holds the lock, and it moves the cursor only once every lane is done.

A stop reaches the workers through a shared flag: each lane ends after the chunk in hand, as the run
does. A failing lane sets that flag for the others, and the run fails once every lane has ended (their
chunks are whole either way). A worker that dies breaks the pool, which fails every lane at once while
the other workers may be inside theirs: the run stops them and waits for them before it fails, and the
next run starts new workers (also when one died between runs). Workers ignore SIGINT and SIGTERM, so
that the process holding the lock stops them between chunks rather than a signal inside one; a worker
whose parent has died (SIGKILL leaves no chance to close the pool) ends by itself after its lane.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from attribution.attributor import Attributor
    from attribution.booking import Summary
    from attribution.ledger import Terms

# Builds, inside a worker process, an attributor over connections of its own (closed on exit). Passed
# to the worker pickled: a module-level function, or a functools.partial of one with picklable arguments.
Connect = Callable[[], AbstractAsyncContextManager["Attributor"]]
# One worker a core is the most that helps (on 2 cores a third lane added CPU, not speed); 16 bounds a
# typo's cost, not a measured limit.
MAX_WORKERS = 16
# How often a worker whose parent died looks whether its lane has ended.
PARENT_GONE_POLL_S = 0.1

log = logging.getLogger(__name__)
T = TypeVar("T")


def deal(chunks: Iterator[list[str]], lanes: int) -> list[list[str]]:
    """The orders of `chunks` (whole click-day chunks in click-time order) dealt into `lanes` lanes, a
    chunk to each in turn: every lane gets days from the whole span, and a day of fewer orders than a
    chunk goes whole to one lane."""
    dealt: list[list[str]] = [[] for _ in range(lanes)]
    for index, chunk in enumerate(chunks):
        dealt[index % lanes] += chunk
    return dealt


class _Flag:
    """A stop flag shared with the workers: one byte, no lock (a multiprocessing.Event takes a lock to
    read, and a worker killed holding it would block the run's event loop at its next `set`)."""

    def __init__(self, context) -> None:
        self._byte = context.RawValue("b", 0)

    def set(self) -> None:
        self._byte.value = 1

    def clear(self) -> None:
        self._byte.value = 0

    def is_set(self) -> bool:
        return self._byte.value == 1


class Lanes:
    """The worker processes of `workers` lanes (lane 0 is the attributor's own): a pool kept from run
    to run, started on first use or by `start`."""

    def __init__(self, connect: Connect, workers: int) -> None:
        if not 2 <= workers <= MAX_WORKERS:
            raise ValueError(f"lanes need 2 to {MAX_WORKERS} workers, not {workers}")
        self.count = workers
        self._connect = connect
        # spawn, not fork: the parent has threads (the driver's, asyncio's) whose locks a fork would copy.
        self._context = multiprocessing.get_context("spawn")
        self._stop = _Flag(self._context)
        # Orders each lane has booked so far in the run (slot i: the i-th lane given to a worker), for the
        # run's progress report; written by one worker each, read without a lock (a count a chunk stale).
        self._booked = self._context.RawArray("q", MAX_WORKERS)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the workers now (a first run otherwise waits for them to start and import)."""
        pool = self._executor()
        for future in [pool.submit(_ready) for _ in range(self.count - 1)]:
            future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def stop(self) -> None:
        """Ask every lane in the workers to end after the chunk in hand."""
        self._stop.set()

    def booked(self) -> int:
        """Orders the workers' lanes of the run in hand have booked so far (their progress)."""
        return sum(self._booked)

    async def book(
        self, lanes: list[list[str]], terms: Terms, now_ms: int, run_id: str, stop: asyncio.Event | None
    ) -> list[Summary]:
        """Book each lane in a worker; their summaries once all are done. A failing lane stops the
        others after their chunks in hand, and the first failure in lane order is raised once every
        lane has ended (the others are logged). A cancellation stops the lanes likewise and waits."""
        self._stop.clear()
        self._booked[:] = [0] * MAX_WORKERS
        futures: list[asyncio.Future] = []
        forward = asyncio.ensure_future(_forward(stop, self._stop)) if stop is not None else None
        try:
            try:
                for slot, lane in enumerate(lanes):
                    futures.append(self._submit(lane, terms, now_ms, run_id, slot))
            except BrokenProcessPool:
                self._stop.set()
                try:
                    await self._ended(futures)
                finally:
                    await self._discard()
                raise
            results = await self._ended(futures)
        finally:
            if forward is not None:
                forward.cancel()
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures[1:]:
            log.warning("attribution run: another lane failed too: %r", failure)
        if failures:
            raise failures[0]
        return results

    async def _ended(self, futures: list[asyncio.Future]) -> list:
        """The lanes' results or failures once every lane has ended. A pool broken meanwhile is discarded
        (its surviving workers waited for) even when the run was cancelled first, as the run must not end
        while a worker of it still books."""
        try:
            return await _through_cancellation(asyncio.gather(*futures, return_exceptions=True), self._stop)
        finally:
            if any(_broke(future) for future in futures):
                await self._discard()

    def _submit(self, lane: list[str], terms: Terms, now_ms: int, run_id: str, slot: int) -> asyncio.Future:
        try:
            future = self._executor().submit(_book_lane, terms, lane, now_ms, run_id, slot)
        except BrokenProcessPool:
            if slot:
                raise
            # A worker died between runs (its pool broke while idle): nothing of this run has started, so
            # a new pool takes the lane.
            log.warning("attribution lanes: a worker died since the last run; starting new workers")
            self._pool = None
            future = self._executor().submit(_book_lane, terms, lane, now_ms, run_id, slot)
        future.add_done_callback(self._stop_on_failure)
        return asyncio.wrap_future(future)

    def _stop_on_failure(self, future: concurrent.futures.Future) -> None:
        # Runs in the pool's thread: a lane that failed stops the others (their chunks stay whole).
        if not future.cancelled() and future.exception() is not None:
            self._stop.set()

    async def _discard(self) -> None:
        """A broken pool (a worker died): every future failed at once, but the other workers may still be
        inside a lane, and they ignore the pool's SIGTERM. Stopped, they end after their chunk in hand;
        the shutdown waits for that, so that the run fails only once nothing of it runs."""
        self._stop.set()
        pool, self._pool = self._pool, None
        if pool is not None:
            # Cancelled meanwhile, the run must still not end before its workers have: to_thread's thread
            # goes on regardless, so the cancellation waits for it.
            await _through_cancellation(
                asyncio.ensure_future(asyncio.to_thread(pool.shutdown, wait=True)), self._stop
            )

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.count - 1,
                mp_context=self._context,
                initializer=_start_worker,
                initargs=(self._connect, self._stop, self._booked),
            )
        return self._pool


def _broke(future: asyncio.Future) -> bool:
    return future.done() and not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)


async def _forward(stop: asyncio.Event, shared: _Flag) -> None:
    await stop.wait()
    shared.set()


async def _through_cancellation(everything: asyncio.Future[T], shared_stop: _Flag) -> T:
    """`everything`'s results; cancelled meanwhile, the lanes are asked to stop and waited for (a worker
    cannot be cancelled inside a chunk), then the cancellation goes on."""
    cancelled = False
    while True:
        try:
            results = await asyncio.shield(everything)
        except asyncio.CancelledError:
            if everything.cancelled():
                raise
            cancelled = True
            shared_stop.set()
            continue
        if cancelled:
            raise asyncio.CancelledError
        return results


# --- in the worker processes ----------------------------------------------------------------------
# A worker process's own state, set once by its initializer (one pool's workers share nothing else).
_worker: dict[str, Any] = {}


def _start_worker(connect: Connect, stop: _Flag, booked) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _worker.update(connect=connect, stop=stop, booked=booked, busy=False)
    threading.Thread(target=_end_with_parent, args=(stop,), daemon=True).start()


def _end_with_parent(stop: _Flag) -> None:
    """A worker outlives a parent that was killed (its pool's queues stay open in the other workers, and
    it ignores SIGTERM): once the parent is gone, the lane in hand ends after its chunk, then the worker."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    multiprocessing.connection.wait([parent.sentinel])
    stop.set()
    while _worker["busy"]:
        time.sleep(PARENT_GONE_POLL_S)
    os._exit(0)


def _ready() -> bool:
    import attribution.attributor  # noqa: F401  (the import is the warm-up)

    return True


def _book_lane(terms: Terms, order_ids: list[str], now_ms: int, run_id: str, slot: int) -> Summary:
    _worker["busy"] = True
    try:
        return asyncio.run(_book_lane_async(terms, order_ids, now_ms, run_id, slot))
    finally:
        _worker["busy"] = False


async def _book_lane_async(
    terms: Terms, order_ids: list[str], now_ms: int, run_id: str, slot: int
) -> Summary:
    booked = _worker["booked"]

    def progress(done: int, _total: int) -> None:
        booked[slot] = done

    async with _worker["connect"]() as attributor:
        return await attributor.book_lane(terms, order_ids, now_ms, run_id, _worker["stop"], progress)
