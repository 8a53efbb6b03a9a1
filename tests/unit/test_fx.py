"""FX: validation of a PUT, the version in effect at a time, and conversion with half-even rounding to
each currency's minor unit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution import currency, fx, money


@pytest.mark.parametrize(
    ("amount", "source", "target", "rate", "expected"),
    [
        (1085, "USD", "EUR", "1.0850", 1000),  # 10.85 USD at 1 EUR = 1.0850 USD
        (250, "USD", "EUR", "1.0850", 230),  # 230.41...
        (1, "USD", "EUR", "2", 0),  # 0.5 → 0 (half to even)
        (3, "USD", "EUR", "2", 2),  # 1.5 → 2
        (5, "USD", "EUR", "2", 2),  # 2.5 → 2
        (-3, "USD", "EUR", "2", -2),  # reversals round the same way
        (1000, "EUR", "JPY", "0.0061", 1639),  # 1 JPY buys 0.0061 EUR: 10.00 EUR is 1639.34 yen (0 decimals)
        (1000, "JPY", "EUR", "162.5", 615),  # 1 EUR buys 162.5 yen: 1000 yen is 6.1538 EUR
        (1000, "BHD", "EUR", "0.41", 244),  # BHD has 3 decimals: 1.000 BHD / 0.41 = 2.439 EUR
        (12345, "EUR", "EUR", "1", 12345),  # the same currency is never converted
    ],
)
def test_convert_minor(amount, source, target, rate, expected) -> None:
    assert fx.convert_minor(amount, source, target, rate) == expected


def test_convert_totals_rounds_each_currency_then_adds_and_names_the_rates() -> None:
    totals = {"EUR": {"approved_minor": 100}, "USD": {"approved_minor": 250}, "GBP": {"approved_minor": 3}}
    fields, used = fx.convert_totals(totals, "EUR", {"USD": "1.0850", "GBP": "2", "JPY": "160"})
    assert fields == {"approved_minor": 100 + 230 + 2}
    assert used == {"GBP": "2", "USD": "1.0850"}  # only the rates used


def test_a_missing_rate_names_the_currency() -> None:
    with pytest.raises(fx.MissingRate) as caught:
        fx.convert_totals({"USD": {"paid_minor": 1}, "JPY": {"paid_minor": 1}}, "EUR", {"USD": "1.1"})
    assert caught.value.currency == "JPY" and "JPY" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"base": "EUR", "rates": {"USD": "1.0850"}}, None),
        ({"base": "EUR", "rates": {"USD": "1.0850"}, "effective_at": "2026-12-01T00:00:00Z"}, None),
        ({"base": "eur", "rates": {"USD": "1"}}, "base"),
        ({"base": "XAU", "rates": {"USD": "1"}}, "base"),  # no minor unit: money is never booked in it
        ({"base": "EUR", "rates": {}}, "at least one"),
        ({"base": "EUR", "rates": {"EUR": "1"}}, "is the base"),
        ({"base": "EUR", "rates": {"USD": "0"}}, "positive"),
        ({"base": "EUR", "rates": {"USD": "0.000000000000"}}, "positive"),
        ({"base": "EUR", "rates": {"USD": "-1.2"}}, "decimal string"),
        ({"base": "EUR", "rates": {"USD": "1e3"}}, "decimal string"),
        ({"base": "EUR", "rates": {"USD": "1.0000000000001"}}, "decimal string"),  # 13 decimals
        ({"base": "EUR", "rates": {"USD": "1234567890123"}}, "decimal string"),  # 13 integer digits
        ({"base": "EUR", "rates": {"USD": " 1.1"}}, "decimal string"),
        ({"base": "EUR", "rates": {"USD": "NaN"}}, "decimal string"),
        ({"base": "EUR", "rates": {"ZZZ": "1"}}, "ISO 4217"),
        ({"base": "EUR", "rates": {"USD": "1"}, "effective_at": "2026-12-01T00:00:00"}, "time zone"),
        ({"base": "EUR", "rates": {"USD": "1"}, "effective_at": "yesterday"}, "ISO-8601"),
        ({"base": "EUR", "rates": {"USD": "1"}, "effective_at": "2200-01-01T00:00:00Z"}, "2100"),
        # The instant in UTC is bounded, not the local fields: out of range once the offset applies.
        ({"base": "EUR", "rates": {"USD": "1"}, "effective_at": "1970-01-01T00:00:00+14:00"}, "1970"),
        ({"base": "EUR", "rates": {"USD": "1"}, "effective_at": "0001-01-01T00:00:00+01:00"}, "1970"),
        ({"base": "EUR", "rates": {"USD": "1"}, "effective_at": "9999-12-31T23:59:59-01:00"}, "2100"),
        ({"base": "EUR", "rates": {f"X{i:02d}": "1" for i in range(201)}}, "at most"),
    ],
)
def test_validate(body, problem) -> None:
    import msgspec

    update = msgspec.convert(body, fx.FxUpdate)
    if problem is None:
        base, rates, effective_ms = fx.validate(update, now_ms=5)
        assert base == "EUR" and rates == {"USD": "1.0850"} and effective_ms in (5, 1_796_083_200_000)
    else:
        with pytest.raises(fx.InvalidFx, match=problem):
            fx.validate(update, now_ms=5)


def test_rates_in_effect_are_found_by_time_and_version() -> None:
    versions = [
        fx.FxVersion(1, "EUR", {"USD": "1.10", "GBP": "0.85"}, effective_ms=100, set_ms=1),
        fx.FxVersion(2, "EUR", {"USD": "1.20"}, effective_ms=200, set_ms=2),
        fx.FxVersion(3, "EUR", {"USD": "1.15"}, effective_ms=150, set_ms=3),  # back-dated: kept, in order
        fx.FxVersion(4, "USD", {"EUR": "0.9"}, effective_ms=0, set_ms=4),
        fx.FxVersion(5, "EUR", {"USD": "1.30"}, effective_ms=200, set_ms=5),  # same time: the later PUT
    ]
    assert fx.rates_at(versions, "EUR", 99) == {}
    assert fx.rates_at(versions, "EUR", 120) == {"USD": ("1.10", 1), "GBP": ("0.85", 1)}
    assert fx.rates_at(versions, "EUR", 160) == {"USD": ("1.15", 3), "GBP": ("0.85", 1)}
    assert fx.rates_at(versions, "EUR", 10**12) == {"USD": ("1.30", 5), "GBP": ("0.85", 1)}


@pytest.mark.parametrize(("code", "digits"), [("EUR", 2), ("JPY", 0), ("BHD", 3), ("KRW", 0), ("CLF", 4)])
def test_minor_unit_exponents_come_from_the_iso_table(code, digits) -> None:
    assert currency.exponent(code) == digits


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, None),
        (["EUR", "USD"], None),
        ([], "non-empty"),
        ("EUR", "non-empty"),
        (["EUR", "EUR"], "twice"),
        (["EUR", "usd"], "ISO 4217"),
        (["EUR", "XXX"], "ISO 4217"),  # "no currency": nothing can be booked in it
        ([f"{c}" for c in ("EUR", "USD", "GBP", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF",
                           "RON", "BGN", "CAD", "AUD", "NZD", "MXN", "BRL", "INR", "CNY", "KRW")], "at most"),
    ],
)  # fmt: skip
def test_check_currencies(value, problem) -> None:
    if problem is None:
        assert currency.check_currencies(value, "EUR") == (value or ["EUR"])
    else:
        with pytest.raises(currency.InvalidCurrencies, match=problem):
            currency.check_currencies(value, "EUR")


@given(
    amount=st.integers(-(10**15), 10**15),
    rate=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=6),
)
def test_conversion_is_exact_to_the_half_even_minor_unit(amount, rate) -> None:
    """Against Python's exact rationals: never a float, never off by one."""
    from fractions import Fraction

    exact = Fraction(amount, 100) / Fraction(rate)
    if abs(exact) > money.INT64_MAX:
        with pytest.raises(money.AmountOutOfRange):
            fx.convert_minor(amount, "USD", "JPY", str(rate))
        return
    got = fx.convert_minor(amount, "USD", "JPY", str(rate))
    assert abs(Fraction(got) - exact) <= Fraction(1, 2)
    if abs(Fraction(got) - exact) == Fraction(1, 2):
        assert got % 2 == 0
    assert abs(got) <= money.INT64_MAX
