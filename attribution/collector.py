"""Full garbage collections held off, and young ones spaced out, while an attributor run holds its
working set.

A run keeps every order's events and stored ledger in memory until its last chunk (attributor.py), and
each chunk's commission events add tens of thousands of short-lived containers. CPython starts a full
(oldest-generation) collection whenever the objects that survived younger collections grow by a quarter,
so a run of 100,000 orders paid for a full pass over its whole working set 17-20 times, 1.0-1.3 s of a
16-20 s run (benchmarks/attribution.py, gc callbacks). The younger generations still collect, so
short-lived cycles go within a run; anything older waits for the run's end, when one full collection is
made (under 0.1 s in the report's runs).

The youngest generation is collected every HELD_YOUNG allocations, not every 700: a run allocates
millions of containers, nearly all freed by reference counting, and 3,500 young and 300 middle passes
took 1.0-1.2 s of a run's CPU; at 20,000, 91 and 8 passes took 0.7-0.8 s (2 M clicks, 100,000 orders).

The thresholds are the process's own (the `gc` module has no other scope): runs overlapping in one
process (tests; `clicktrail attribute` runs one at a time) are counted under a lock, and the thresholds
come back when the last one ends, unless someone set others meanwhile (theirs are kept). From CPython
3.14 the collector is incremental and ignores the oldest generation's threshold: there the hold does
nothing and runs collect as the interpreter decides."""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Iterator

# The oldest generation's threshold while held: gen-1 collections between full ones, never reached.
HELD_THRESHOLD = 1 << 30
# The youngest generation's threshold while held, at least (a run allocates in bulk; see above).
HELD_YOUNG = 20_000
# Whether `gc.set_threshold`'s third value still governs full collections (see the module's docstring).
HOLDS = sys.version_info < (3, 14)


class _Holds:
    """How many runs hold full collections now, and the thresholds to give back after the last."""

    lock = threading.Lock()
    count = 0
    saved: tuple[int, int, int] = (700, 10, 10)
    held: tuple[int, int, int] = (700, 10, HELD_THRESHOLD)


@contextlib.contextmanager
def full_collections_held() -> Iterator[None]:
    if not HOLDS:
        yield
        return
    with _Holds.lock:
        if _Holds.count == 0:
            _Holds.saved = gc.get_threshold()
            young, middle, _ = _Holds.saved
            _Holds.held = (max(young, HELD_YOUNG), middle, HELD_THRESHOLD)
            gc.set_threshold(*_Holds.held)
        _Holds.count += 1
    try:
        yield
    finally:
        with _Holds.lock:
            _Holds.count -= 1
            last = _Holds.count == 0
            if last and gc.get_threshold() == _Holds.held:
                gc.set_threshold(*_Holds.saved)
        if last:
            gc.collect()


def holding() -> int:
    """How many runs hold full collections now (tests check that none is left holding)."""
    return _Holds.count
