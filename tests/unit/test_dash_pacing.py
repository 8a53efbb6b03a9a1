"""The dashboard's pacer (redirector/dash/pacing.py): pages take turns, and together take at most their share
of the worker's time after a small burst; too many waiting pages are refused at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from redirector.dash import pacing
from redirector.dash.pacing import Busy, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# (share %, burst ms, page times spent back to back in s, delay the next page must wait in s)
CASES = [
    (5, 250, [], 0.0),  # a quiet worker: the whole burst is there
    (5, 250, [0.2], 0.0),  # within the burst
    (5, 250, [0.25], 0.0),  # exactly the burst
    (5, 250, [0.3], 1.0),  # 50 ms over the burst, refilled at 5 % of the clock: 1 s
    (5, 250, [0.1, 0.1, 0.1], 1.0),  # several pages add up
    (10, 250, [0.35], 1.0),
    (100, 250, [0.35], 0.1),  # 100 %: pages still count, but refill as fast as the clock
    (5, 0, [0.01], 0.2),  # no burst: 10 ms of page needs 200 ms of clock
    (5, 250, [60.0], 10.0),  # one pathological page: the wait is capped (MAX_WAIT_S)
    (5, 250, [60.0, 60.0], 10.0),
]


@pytest.mark.parametrize(("share_pct", "burst_ms", "spent", "delay_s"), CASES)
def test_delay_after_pages(share_pct: int, burst_ms: int, spent: list[float], delay_s: float) -> None:
    pacer = Pacer(share_pct, burst_ms, clock=Clock())
    for busy_s in spent:
        pacer.spend(busy_s)
    assert pacer.delay_s() == pytest.approx(delay_s)


def test_the_clock_refills_up_to_the_burst_only() -> None:
    clock = Clock()
    pacer = Pacer(5, 250, clock=clock)
    pacer.spend(0.3)
    clock.now += 1.0
    assert pacer.delay_s() == 0.0
    clock.now += 3_600  # an idle hour stores no more than the burst
    pacer.spend(0.3)
    assert pacer.delay_s() == pytest.approx(1.0)


def test_pages_take_turns_and_wait_for_their_share() -> None:
    """Real clocks: two pages of 20 ms of CPU with no burst at 50 %: the second starts >= 20 ms after the
    first ended, and never while the first runs. A page waiting on I/O costs nothing."""
    pacer = Pacer(50, burst_ms=0)
    events: list[tuple[str, float]] = []

    async def one(name: str) -> None:
        async with pacer.turn():
            events.append((f"{name} start", time.monotonic()))
            busy_until = time.process_time() + 0.02
            while time.process_time() < busy_until:
                pass
            events.append((f"{name} end", time.monotonic()))

    async def main() -> None:
        await asyncio.gather(one("a"), one("b"))

    asyncio.run(main())
    assert [e for e, _ in events] == ["a start", "a end", "b start", "b end"]
    assert events[2][1] - events[1][1] >= 0.015


def test_waiting_on_io_is_not_charged() -> None:
    pacer = Pacer(1, burst_ms=0)

    async def main() -> None:
        async with pacer.turn():
            await asyncio.sleep(0.2)  # ClickHouse answering slowly: no CPU of this process

    asyncio.run(main())
    assert pacer.delay_s() < 1.0  # charged 0.2 s at 1 % it would be 20 s


def test_too_many_waiting_pages_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "MAX_WAITING", 2)
    pacer = Pacer(100)
    outcomes: list[str] = []

    async def one() -> None:
        try:
            async with pacer.turn():
                await asyncio.sleep(0.01)
            outcomes.append("served")
        except Busy:
            outcomes.append("busy")

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(4)))

    asyncio.run(main())
    # One runs, two wait, the fourth is refused at once.
    assert sorted(outcomes) == ["busy", "served", "served", "served"]
