"""attribution/lanes.py `_through_cancellation`: a run cancelled while its lanes (or the shutdown of a broken
pool) are still going asks them to stop and ends only once they have."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

from attribution.lanes import Lanes, _Flag, _through_cancellation


def _flag() -> _Flag:
    return _Flag(multiprocessing.get_context("spawn"))


@pytest.mark.parametrize("result", [[1, 2], None, "done"])
def test_returns_what_it_waited_for(result) -> None:
    async def main():
        return await _through_cancellation(asyncio.ensure_future(asyncio.sleep(0, result)), _flag())

    assert asyncio.run(main()) == result


@pytest.mark.parametrize("cancellations", [1, 3])
def test_cancelled_it_stops_the_lanes_and_waits_for_them_before_cancelling(cancellations: int) -> None:
    stop = _flag()
    finished = threading.Event()

    def lane() -> str:
        # a worker's lane: it ends at its next chunk boundary once stopped, not when cancelled
        while not stop.is_set():
            time.sleep(0.01)
        time.sleep(0.1)
        finished.set()
        return "ended"

    async def main() -> None:
        task = asyncio.ensure_future(
            _through_cancellation(asyncio.ensure_future(asyncio.to_thread(lane)), stop)
        )
        await asyncio.sleep(0.05)
        for _ in range(cancellations):
            task.cancel()
            await asyncio.sleep(0.01)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set(), "the cancellation went on before the lane had ended"

    asyncio.run(main())
    assert stop.is_set()


def test_a_failure_of_what_it_waits_for_is_raised() -> None:
    async def failing() -> None:
        raise RuntimeError("lane failed")

    async def main() -> None:
        await _through_cancellation(asyncio.ensure_future(failing()), _flag())

    with pytest.raises(RuntimeError, match="lane failed"):
        asyncio.run(main())


class _SlowShutdown:
    """A broken pool whose surviving worker is still inside its chunk: shutdown returns once it ended."""

    def __init__(self) -> None:
        self.ended = threading.Event()

    def shutdown(self, wait: bool) -> None:
        time.sleep(0.2)
        self.ended.set()


def test_a_run_cancelled_while_a_broken_pool_shuts_down_ends_after_its_workers() -> None:
    lanes = Lanes(_never_connects, 2)
    pool = lanes._pool = _SlowShutdown()  # type: ignore[assignment]

    async def main() -> None:
        task = asyncio.ensure_future(lanes._discard())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.ended.is_set(), "the run was cancelled while a worker of it was still booking"

    asyncio.run(main())
    assert lanes._pool is None and lanes._stop.is_set()


def _never_connects():
    raise AssertionError("no worker is started here")


class _PoolThatBreaks(_SlowShutdown):
    """A pool whose lanes run until `die` breaks it (a worker killed): every lane fails at once, and the
    surviving worker ends its chunk only within the shutdown."""

    def __init__(self) -> None:
        super().__init__()
        self.futures: list[concurrent.futures.Future] = []

    def submit(self, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.futures.append(future)
        return future

    def die(self) -> None:
        for future in self.futures:
            future.set_exception(BrokenProcessPool("a worker died"))


@pytest.mark.parametrize("lanes", [2, 3])
def test_a_run_cancelled_before_its_pool_broke_still_ends_after_its_workers(lanes: int) -> None:
    booking = Lanes(_never_connects, 3)
    pool = booking._pool = _PoolThatBreaks()  # type: ignore[assignment]

    async def main() -> None:
        run = asyncio.ensure_future(booking.book([["o"]] * lanes, None, 0, "run", None))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        run.cancel()  # waits for the lanes: they are asked to stop
        await asyncio.sleep(0.05)
        assert not run.done() and booking._stop.is_set()
        pool.die()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert pool.ended.is_set(), "the run ended while a worker of its broken pool still booked"

    asyncio.run(main())
    assert booking._pool is None
