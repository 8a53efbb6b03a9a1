"""core/clock.py parse_iso_ms: an ISO-8601 time with its zone as exact Unix ms of the instant in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clock import NotATime, parse_iso_ms
from core.links import iso_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00z", 0),
        ("1970-01-01T00:00:00+00:00", 0),
        ("2026-12-01T10:00:00.123Z", 1_796_119_200_123),
        ("2026-12-01T10:00:00.123999Z", 1_796_119_200_123),  # microseconds cut, never rounded up
        ("2026-12-01T11:00:00.123+01:00", 1_796_119_200_123),
        # out of range in UTC, not in local time: the offset is applied, nothing raises
        ("1970-01-01T00:00:00+14:00", -50_400_000),
        ("0001-01-01T00:00:00+01:00", -62_135_600_400_000),
        ("9999-12-31T23:59:59-01:00", 253_402_304_399_000),
    ],
)
def test_iso_ms(text: str, ms: int) -> None:
    assert parse_iso_ms(text) == ms


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2026-12-31T00:00:00", "time zone"),
        ("2026-12-31", "time zone"),
        ("tomorrow", "ISO-8601"),
        ("", "ISO-8601"),
        ("2026-12-31T00:00:00+24:00", "ISO-8601"),
        ("2026-02-30T00:00:00Z", "ISO-8601"),
        ("2026-12-31T00:00:00Z" + " " * 64, "ISO-8601"),  # too long to parse
        (1_767_139_200, "ISO-8601"),
        (None, "ISO-8601"),
    ],
)
def test_not_a_time(value: object, problem: str) -> None:
    with pytest.raises(NotATime, match=problem):
        parse_iso_ms(value)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60, 23 * 60),
)
def test_the_same_instant_in_any_zone_is_the_same_ms(local: datetime, offset_min: int) -> None:
    moment = local.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    utc = moment.astimezone(UTC) if datetime(2, 1, 1) < local < datetime(9998, 1, 1) else None
    ms = parse_iso_ms(moment.isoformat())
    assert ms == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if utc is not None:
        assert ms == parse_iso_ms(utc.isoformat())


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_764_237_600_123, "2025-11-27T10:00:00.123Z"),
        (4_260_211_199_999, "2104-12-31T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),  # through a float: ...59.998Z
    ],
)
def test_iso_ms_is_exact_and_the_inverse_of_parse_iso_ms(ms: int, text: str) -> None:
    assert iso_ms(ms) == text and parse_iso_ms(text) == ms
