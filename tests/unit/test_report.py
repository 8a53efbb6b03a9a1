"""The earnings report's day range, table-driven: what ClickHouse 18.16's Date can read, exactly
YYYY-MM-DD, never reversed (anything else used to wrap silently to 1970 or be truncated)."""

from __future__ import annotations

from datetime import date

import pytest

from attribution import report

TODAY = date(2026, 11, 27)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, (date(1970, 1, 1), TODAY)),
        ("", "", (date(1970, 1, 1), TODAY)),
        ("2026-01-01", "2026-01-31", (date(2026, 1, 1), date(2026, 1, 31))),
        ("2026-01-01", "2026-01-01", (date(2026, 1, 1), date(2026, 1, 1))),  # one day
        ("1970-01-01", "2105-12-31", (date(1970, 1, 1), date(2105, 12, 31))),  # the whole Date range
        ("2024-02-29", None, (date(2024, 2, 29), TODAY)),
    ],
)
def test_accepted_ranges(start, end, expected) -> None:
    assert report.day_range(start, end, TODAY) == expected


@pytest.mark.parametrize(
    ("start", "end", "why"),
    [
        ("0001-01-01", None, "outside"),
        ("1969-12-31", None, "outside"),
        (None, "9999-12-31", "outside"),
        (None, "2106-01-01", "outside"),  # 18.16 reads it as 0000-00-00
        ("2026-13-01", None, "calendar"),
        ("2026-02-30", None, "calendar"),
        ("2026-01-01xyz", None, "YYYY-MM-DD"),  # used to be cut to its first ten characters
        ("2026-01-01T00:00", None, "YYYY-MM-DD"),
        ("20260101", None, "YYYY-MM-DD"),  # date.fromisoformat would take it
        ("2026-W01-1", None, "YYYY-MM-DD"),
        ("２０２６-01-01", None, "YYYY-MM-DD"),  # full-width digits
        ("2026-01-01\n", None, "YYYY-MM-DD"),
        (" 2026-01-01", None, "YYYY-MM-DD"),
        ("x", None, "YYYY-MM-DD"),
        ("2026-02-01", "2026-01-31", "before"),  # reversed
        ("2030-01-01", None, "before"),  # from after today, to defaulting to today
    ],
)
def test_refused_ranges(start, end, why: str) -> None:
    with pytest.raises(report.BadRange, match=why):
        report.day_range(start, end, TODAY)


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (123456, "EUR", "1,234.56"),
        (-5, "EUR", "-0.05"),
        (1000, "JPY", "1,000"),  # no minor unit
        (-1000, "KRW", "-1,000"),
        (1234, "BHD", "1.234"),  # three digits
        (7, "ZZZ", "0.07"),  # unknown to the ISO table: two digits
    ],
)
def test_amounts_are_shown_with_the_currencys_iso_digits(minor, currency, shown) -> None:
    assert report.major_units(minor, currency) == shown
