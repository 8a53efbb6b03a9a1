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

A stop reaches the workers through a shared event: each ends after the chunk in hand, as the run does. A
failing lane fails the run once the other lanes are done (their chunks are whole either way); a worker
that dies takes the pool with it, and the next run starts a new one. Workers ignore SIGINT and SIGTERM:
the process that holds the lock stops them between chunks instead of a signal stopping them inside one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attribution.attributor import Attributor, Summary
    from attribution.ledger import Terms

# Builds, inside a worker process, an attributor over connections of its own (closed on exit). Passed
# to the worker pickled: a module-level function, or a functools.partial of one with picklable arguments.
Connect = Callable[[], AbstractAsyncContextManager["Attributor"]]
MAX_WORKERS = 16


def deal(chunks: Iterator[list[str]], lanes: int) -> list[list[str]]:
    """The orders of `chunks` (whole click-day chunks in click-time order) dealt into `lanes` lanes, a
    chunk to each in turn: every lane gets days from the whole span, and a day of fewer orders than a
    chunk goes whole to one lane."""
    dealt: list[list[str]] = [[] for _ in range(lanes)]
    for index, chunk in enumerate(chunks):
        dealt[index % lanes] += chunk
    return dealt


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
        self._stop = self._context.Event()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the workers now and wait until each has imported the attributor (a first run otherwise
        pays for it)."""
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

    async def book(
        self, lanes: list[list[str]], terms: Terms, now_ms: int, run_id: str, stop: asyncio.Event | None
    ) -> list[Summary]:
        """Book each lane in a worker; their summaries once all are done (the first failure raised
        then). A cancellation stops the lanes after their chunks in hand and waits for them."""
        self._stop.clear()
        pool = self._executor()
        try:
            futures = [
                asyncio.wrap_future(pool.submit(_book_lane, terms, lane, now_ms, run_id)) for lane in lanes
            ]
        except BrokenProcessPool:
            self._pool = None
            raise
        everything = asyncio.gather(*futures, return_exceptions=True)
        forward = asyncio.ensure_future(_forward(stop, self._stop)) if stop is not None else None
        try:
            results = await _through_cancellation(everything, self._stop)
        finally:
            if forward is not None:
                forward.cancel()
        for result in results:
            if isinstance(result, BrokenProcessPool):
                self._pool = None
            if isinstance(result, BaseException):
                raise result
        return results

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.count - 1,
                mp_context=self._context,
                initializer=_start_worker,
                initargs=(self._connect, self._stop),
            )
        return self._pool


async def _forward(stop: asyncio.Event, shared: Any) -> None:
    await stop.wait()
    shared.set()


async def _through_cancellation(everything: asyncio.Future, shared_stop: Any) -> list:
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


def _start_worker(connect: Connect, stop: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _worker["connect"], _worker["stop"] = connect, stop


def _ready() -> bool:
    import attribution.attributor  # noqa: F401  (the import is the warm-up)

    return True


def _book_lane(terms: Terms, order_ids: list[str], now_ms: int, run_id: str) -> Summary:
    return asyncio.run(_book_lane_async(terms, order_ids, now_ms, run_id))


async def _book_lane_async(terms: Terms, order_ids: list[str], now_ms: int, run_id: str) -> Summary:
    async with _worker["connect"]() as attributor:
        return await attributor.book_lane(terms, order_ids, now_ms, run_id, _worker["stop"])
