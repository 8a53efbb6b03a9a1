"""Full garbage collections held off while an attributor run holds its working set.

A run keeps every order's events and stored ledger in memory until its last chunk (attributor.py), and
each chunk's commission events add tens of thousands of short-lived containers. CPython starts a full
(oldest-generation) collection whenever the objects that survived younger collections grow by a quarter,
so a run of 100,000 orders paid for a full pass over its whole working set about twenty times, over a
second of an 16-20 s run (benchmarks/attribution.py, gc callbacks). The younger generations still
collect as usual, so short-lived cycles go at once; anything older waits for the run's end, when one
full collection is made.

The thresholds are the process's own (the `gc` module has no other scope): runs overlapping in one
process (tests) are counted, and the thresholds come back when the last one ends."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# The oldest generation's threshold while held: gen-1 collections between full ones, never reached.
HELD_THRESHOLD = 1 << 30


class _Holds:
    """How many runs hold full collections now, and the thresholds to give back after the last."""

    count = 0
    saved: tuple[int, int, int] = (700, 10, 10)


@contextlib.contextmanager
def full_collections_held() -> Iterator[None]:
    if _Holds.count == 0:
        _Holds.saved = gc.get_threshold()
        young, middle, _ = _Holds.saved
        gc.set_threshold(young, middle, HELD_THRESHOLD)
    _Holds.count += 1
    try:
        yield
    finally:
        _Holds.count -= 1
        if _Holds.count == 0:
            gc.set_threshold(*_Holds.saved)
            gc.collect()
