"""The one wall clock: Unix milliseconds. Rules take the time as an argument; only the edges (handlers,
jobs) read it, through here."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
