"""How dashboard pages share a worker with the redirects: one page at a time per worker, and pages together
take at most `dash_max_share_pct` of the worker's time (a token bucket of page time that refills at that
share of the clock, holding at most BURST_MS). A page that finds the bucket empty waits for its turn; a
redirect never waits. Without this, two browsers loading pages back to back took a third of the worker
(issue 15: 0.69 x the redirects, benchmarks/dashload.py).

A page's cost is the worker process's CPU time from its turn to its answer: that includes the redirects
the loop answered meanwhile, so it over-counts, never under-counts, what the page took from them; time
spent waiting for ClickHouse or Redis is not counted (charging wall time, a worker's first pages, slow
with connecting, ran up seconds of debt and kept the next pages waiting past a browser's patience)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

# Page time that may be spent at once after a quiet spell: a person opening a few pages in a row does not
# wait, a browser loading pages in a loop soon does. Small beside a benchmark's 10 s (issue 15's 5 %).
BURST_MS = 250
# Pages waiting for their turn in one worker; one more is answered "busy" (503) at once rather than
# queued behind minutes of others.
MAX_WAITING = 16
# The longest wait one page's debt can impose: a pathological page (seconds of CPU) slows the next ones,
# it does not lock the dashboard for minutes.
MAX_WAIT_S = 10.0


class Busy(Exception):
    """Too many pages are waiting for their turn."""


class Pacer:
    def __init__(
        self,
        share_pct: int,
        burst_ms: int = BURST_MS,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self._rate = share_pct / 100
        self._burst_s = burst_ms / 1000
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._credit_s = self._burst_s
        self._at = clock()
        self._turn = asyncio.Lock()
        self._waiting = 0

    def _refill(self) -> None:
        now = self._clock()
        self._credit_s = min(self._burst_s, self._credit_s + (now - self._at) * self._rate)
        self._at = now

    def delay_s(self) -> float:
        """How long the next page must wait before it may start (0: now)."""
        self._refill()
        return 0.0 if self._credit_s >= 0 else -self._credit_s / self._rate

    def spend(self, busy_s: float) -> None:
        self._refill()
        self._credit_s = max(self._credit_s - busy_s, -MAX_WAIT_S * self._rate)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for this page's turn (one page at a time, within the share), then time the page."""
        if self._waiting >= MAX_WAITING:
            raise Busy("too many dashboard pages are waiting")
        self._waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self._waiting -= 1
        try:
            while (delay := self.delay_s()) > 0:
                await asyncio.sleep(delay)
            started = self._cpu_clock()
            try:
                yield
            finally:
                self.spend(self._cpu_clock() - started)
        finally:
            self._turn.release()
