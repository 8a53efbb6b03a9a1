"""attribution/lanes.py `_through_cancellation`: a run cancelled while its lanes (or the shutdown of a broken
pool) are still going asks them to stop and ends only once they have."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time

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
