"""ISO 4217 currencies: which codes exist, how many minor-unit digits each has, and the merchant's list of
accepted order currencies. The table is the maintained `iso4217` package (the ISO list, updated when ISO
publishes an amendment), never a hand-kept copy.

A merchant's `currencies` is the set of currencies its order webhooks may use; it defaults to
`[currency]` (so merchants stored before the field existed read as before). Commission is booked in the
order's own currency; nothing is ever summed across currencies except by an explicit FX conversion
(attribution/fx.py)."""

from __future__ import annotations

from iso4217 import Currency

from core import validate as check

# An accepted-currencies list longer than this is an input error (a merchant selling in 20 currencies is
# already a global marketplace); it also bounds the merchant record and the webhook check.
MAX_CURRENCIES = 20
REASON_UNSUPPORTED_CURRENCY = "unsupported_currency"


class InvalidCurrencies(ValueError):
    """A `currencies` value that cannot be stored; the message says why."""


def exponent(code: str) -> int:
    """Minor-unit digits of an ISO 4217 currency (JPY 0, EUR 2, BHD 3). Raises KeyError for a code that
    is not an ISO currency or has no minor unit defined (gold, SDR, the test code XTS)."""
    try:
        digits = Currency(code).exponent
    except ValueError:
        raise KeyError(code) from None
    if digits is None:
        raise KeyError(code)
    return digits


def is_iso(code: object) -> bool:
    """An upper-case three-letter ISO 4217 code of a currency with minor units (money can be booked in it)."""
    if not check.is_currency(code):
        return False
    try:
        exponent(code)  # type: ignore[arg-type]
    except KeyError:
        return False
    return True


def check_currencies(value: object, currency: str) -> list[str]:
    """The accepted-currencies list of a merchant whose main currency is `currency`: None means
    `[currency]`; otherwise 1..MAX_CURRENCIES distinct ISO 4217 codes, kept in the given order. Pure: the
    merchant API (POST now, PATCH at merge) validates the field with it."""
    if value is None:
        return [currency]
    if not isinstance(value, list) or not value:
        raise InvalidCurrencies('currencies must be a non-empty list of ISO 4217 codes such as ["EUR"]')
    if len(value) > MAX_CURRENCIES:
        raise InvalidCurrencies(f"currencies lists at most {MAX_CURRENCIES} codes, not {len(value)}")
    for code in value:
        if not is_iso(code):
            raise InvalidCurrencies(f"currencies: {code!r} is not an ISO 4217 currency code such as EUR")
    if len(set(value)) != len(value):
        raise InvalidCurrencies("currencies lists a code twice")
    return list(value)


def accepted(currencies: list[str] | None, currency: str) -> list[str]:
    """What a stored merchant accepts (its list, or its one currency when it has none stored)."""
    return list(currencies) if currencies else [currency]
