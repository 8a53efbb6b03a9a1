"""The open-loop client's scheduler (benchmarks/openloop.py) sleeps between its wake-ups under uvloop, whose
clock and timers count whole milliseconds: a wake-up asked for less than a millisecond ahead could round to
0 ms and fire at once, over and over, spinning a core that the server under test needs.

The first test guards the rule at every clock value (whether 0.5 ms rounds to 0 depends on the clock's
magnitude, so the uptime); the second shows the spin in a real loop, which only fails on the old value at
the uptimes where it rounds to 0 (from 65,536 to 262,144 s, for example)."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from benchmarks.openloop import TICK_S, OpenLoopClient


@pytest.mark.parametrize("now", [0.0, 1.5, 999.999, 76_941.475, 123_456.789, 4_000_000.001, 86_400.0 * 365])
def test_a_wake_up_tick_ahead_never_rounds_to_no_delay(now: float) -> None:
    # uvloop's call_at: delay = when - loop.time(), then round(delay * 1000) milliseconds.
    for step in range(1_000):
        at = now + step * 0.001
        assert round(((at + TICK_S) - at) * 1000) >= 1, (at, TICK_S)


def test_the_scheduler_sleeps_between_wake_ups() -> None:
    # 3,000 requests a second (a third of a millisecond apart, so most fall due within a millisecond of a
    # wake-up) for half a second, no connection to send them on (they queue): the scheduler should wake
    # about once a millisecond at most, not hundreds of thousands of times.
    client = OpenLoopClient("127.0.0.1", 9, rate=3_000, duration_s=0.5, links=10, seed=1, click_param="c")
    ticks = 0
    tick = client._tick

    def counted(loop) -> None:
        nonlocal ticks
        ticks += 1
        tick(loop)

    client._tick = counted  # type: ignore[method-assign]

    async def drive() -> float:
        loop = asyncio.get_running_loop()
        client.t0 = client.wake_at = loop.time() + 0.01
        client.total = int(client.rate * client.duration_s)
        started = time.process_time()
        loop.call_at(client.t0, client._tick, loop)
        await asyncio.sleep(0.6)
        return time.process_time() - started

    cpu_s = uvloop.run(drive())
    assert client.scheduled == client.total == 1_500 and len(client.queue) == 1_500
    assert ticks <= 0.6 / TICK_S + 10, ticks
    assert cpu_s < 0.3, cpu_s
