"""The one wall clock: Unix milliseconds. Rules take the time as an argument; only the edges (handlers,
jobs) read it, through here."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# Longer than any ISO-8601 time with microseconds and an offset: refused before it is parsed.
MAX_ISO_CHARS = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class NotATime(ValueError):
    """Text that is not an ISO-8601 time with a zone; the message says which part is wrong."""


def parse_iso_ms(value: object) -> int:
    """An ISO-8601 time with its zone (`Z` or an offset) as Unix milliseconds, exact (integer arithmetic,
    no float) and with the offset applied, so that a caller's range check is on the instant itself: a
    local year in range may be out of it in UTC (`0001-01-01T00:00:00+01:00`), and converting such a time
    with `astimezone()` raises. May be negative or far in the future; each caller bounds it. Raises
    NotATime."""
    if not isinstance(value, str) or len(value) > MAX_ISO_CHARS:
        raise NotATime("must be an ISO-8601 time such as 2026-12-31T23:59:59Z")
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise NotATime("must be an ISO-8601 time such as 2026-12-31T23:59:59Z") from None
    if moment.tzinfo is None:
        raise NotATime("needs a time zone (Z or +hh:mm)")
    return datetime_ms(moment)


def datetime_ms(moment: datetime) -> int:
    """An aware datetime as Unix milliseconds, exact (integer arithmetic: no float rounding)."""
    return (moment - _EPOCH) // _MS


def ms_datetime(ms: int) -> datetime:
    """Unix milliseconds as an aware datetime in UTC, exact (`datetime_ms`'s inverse). Raises
    OverflowError outside years 1..9999."""
    return _EPOCH + ms * _MS
