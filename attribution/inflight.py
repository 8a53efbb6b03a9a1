"""Waiting for what a run started, so that nothing of it is left running once it returns or fails: the
failed-run hold on the attributor's lock counts from then (attributor.py, FAILED_RUN_HOLD_MS), and a write
gives up only on its own timeout."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

log = logging.getLogger("attribution.attributor")


async def finished(writing: deque[asyncio.Future]) -> None:
    """Wait for the oldest write and take it off; a cancellation of the run does not cancel the write
    (it would stop between its insert and its emission), which then stays for `settled`."""
    await asyncio.shield(writing[0])
    writing.popleft()


async def settled(started: list[asyncio.Future]) -> None:
    """Wait for what a failing run started, through further cancellations, and log each failure (the
    run raises one of them)."""
    cancelled = False
    while pending := [f for f in started if not f.done()]:
        try:
            await asyncio.shield(asyncio.gather(*pending, return_exceptions=True))
        except asyncio.CancelledError:
            cancelled = True
    for future in started:
        if not future.cancelled() and future.exception() is not None:
            log.warning("attribution run: a chunk's read or write failed: %r", future.exception())
    if cancelled:
        raise asyncio.CancelledError


async def gathered(*reads):
    """The reads' results, all of them done: a failure is raised once none of them runs any more."""
    results = await asyncio.gather(*reads, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
