"""FX rates set by the admin, versioned, and the conversion of per-currency totals into one currency.

A `PUT /api/fx` body `{"base": "EUR", "rates": {"USD": "1.0850"}, "effective_at": ISO-8601}` says "from
`effective_at`, one EUR buys 1.0850 USD". Every PUT is kept (`Keys.fx_rates`, a list appended to, never
rewritten); the rate of a (base, currency) pair in effect at a time is the one of the latest version, by
(effective time, version number), that set that pair at or before that time. A PUT need not repeat the
pairs it does not change; a pair cannot be removed, only superseded.

Conversion is direct only: totals are converted into X with the rates of base X (never through a third
currency or an inverted pair, whose rounding nobody set). Each currency's total is converted exactly with
`decimal.Decimal` and rounded half-even to X's minor unit once, then the rounded totals are added.
Rates are decimal strings, positive, at most 12 integer and 12 fractional digits; amounts never become
floats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal

import msgspec

from attribution import currency, money
from core.clock import NotATime, parse_iso_ms

# One PUT's pairs: far more than the ~180 circulating currencies is an input error.
MAX_RATES_PER_VERSION = 200
# Decimal string: 1-12 integer digits, optionally 1-12 fractional digits; no sign, exponent or spaces.
RATE_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")
# Working precision of a conversion: 19 digits of amount, 24 of rate and 3 of exponent shift, with room
# to spare, so the only rounding is the explicit half-even one to minor units.
_CONTEXT = Context(prec=80)
# effective_at within what ClickHouse's DateTime and people can mean.
MIN_EFFECTIVE_MS = 0
MAX_EFFECTIVE_MS = 4_102_444_800_000  # 2100-01-01


class InvalidFx(ValueError):
    """A PUT /api/fx body that cannot be stored; the message says why."""


class MissingRate(LookupError):
    """No rate in effect for a pair a conversion needs; `currency` is the one that cannot be converted."""

    def __init__(self, base: str, code: str) -> None:
        super().__init__(
            f"no {base}/{code} rate in effect: PUT /api/fx with base {base} and a rate for {code}"
        )
        self.base = base
        self.currency = code


class FxUpdate(msgspec.Struct, forbid_unknown_fields=True):
    base: str
    rates: dict[str, str]
    effective_at: str | None = None  # default: when the PUT is received


@dataclass(frozen=True, slots=True)
class FxVersion:
    version: int  # 1-based position in the list of every PUT
    base: str
    rates: dict[str, str]
    effective_ms: int
    set_ms: int

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "base": self.base,
            "rates": dict(self.rates),
            "effective_ms": self.effective_ms,
            "set_ms": self.set_ms,
        }


def parse_time_ms(value: str) -> int:
    """An ISO-8601 time with a zone (`Z` or an offset) as Unix milliseconds."""
    try:
        ms = parse_iso_ms(value)
    except NotATime as exc:
        raise InvalidFx(f"{str(value)[:64]!r}: {exc}") from None
    if not MIN_EFFECTIVE_MS <= ms < MAX_EFFECTIVE_MS:
        raise InvalidFx(f"{value!r} is not between 1970 and 2100")
    return ms


def check_rate(code: str, value: object) -> Decimal:
    if not isinstance(value, str) or not RATE_RE.fullmatch(value):
        raise InvalidFx(
            f"rate of {code} must be a decimal string with at most 12 integer and 12 fractional digits, "
            f'such as "1.0850", not {value!r}'
        )
    rate = Decimal(value)
    if rate <= 0:
        raise InvalidFx(f"rate of {code} must be positive")
    return rate


def validate(update: FxUpdate, now_ms: int) -> tuple[str, dict[str, str], int]:
    """(base, rates, effective ms) of a PUT body, or InvalidFx."""
    if not currency.is_iso(update.base):
        raise InvalidFx(f"base {update.base!r} is not an ISO 4217 currency code such as EUR")
    if not update.rates:
        raise InvalidFx("rates must name at least one currency")
    if len(update.rates) > MAX_RATES_PER_VERSION:
        raise InvalidFx(f"at most {MAX_RATES_PER_VERSION} rates per PUT")
    for code, value in update.rates.items():
        if not currency.is_iso(code):
            raise InvalidFx(f"{code!r} is not an ISO 4217 currency code")
        if code == update.base:
            raise InvalidFx(f"{code} is the base: its rate is 1 by definition")
        check_rate(code, value)
    effective_ms = now_ms if update.effective_at is None else parse_time_ms(update.effective_at)
    return update.base, dict(sorted(update.rates.items())), effective_ms


def rates_at(versions: list[FxVersion], base: str, at_ms: int) -> dict[str, tuple[str, int]]:
    """currency → (rate string, version) of every pair of `base` in effect at `at_ms`."""
    out: dict[str, tuple[str, int, int]] = {}
    for v in versions:
        if v.base != base or v.effective_ms > at_ms:
            continue
        for code, rate in v.rates.items():
            held = out.get(code)
            if held is None or (v.effective_ms, v.version) > (held[2], held[1]):
                out[code] = (rate, v.version, v.effective_ms)
    return {code: (rate, version) for code, (rate, version, _) in out.items()}


def convert_minor(amount_minor: int, source: str, target: str, rate: str) -> int:
    """`amount_minor` of `source` in minor units of `target`, where one `target` buys `rate` `source`,
    rounded half-even to the minor unit. Raises money.AmountOutOfRange past Int64."""
    if source == target:
        return amount_minor
    shift = currency.exponent(target) - currency.exponent(source)
    exact = _CONTEXT.divide(_CONTEXT.multiply(Decimal(amount_minor), Decimal(1).scaleb(shift)), Decimal(rate))
    rounded = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=_CONTEXT))
    if abs(rounded) > money.INT64_MAX:
        raise money.AmountOutOfRange(f"{amount_minor} {source} in {target} exceeds Int64 minor units")
    return rounded


def convert_totals(
    totals: dict[str, dict[str, int]], target: str, rates: dict[str, str]
) -> tuple[dict[str, int], dict[str, str]]:
    """Per-currency totals (currency → field → minor) as one total per field in `target`, each currency's
    total rounded on its own; and the rates used. Raises MissingRate naming the first currency (in code
    order) without a rate."""
    fields: dict[str, int] = {}
    used: dict[str, str] = {}
    for code in sorted(totals):
        if code != target:
            if code not in rates:
                raise MissingRate(target, code)
            used[code] = rates[code]
        for name, amount in totals[code].items():
            fields[name] = fields.get(name, 0) + convert_minor(amount, code, target, rates.get(code, "1"))
    for name, amount in fields.items():
        if abs(amount) > money.INT64_MAX:
            raise money.AmountOutOfRange(f"converted {name} exceeds Int64 minor units")
    return fields, used


class FxStore:
    """Every FX version in one Redis list (`Keys.fx_rates`): a PUT is one RPUSH, so versions are numbered
    by their position and never lost or reordered."""

    def __init__(self, redis, keys) -> None:
        self._redis = redis
        self._keys = keys

    async def put(self, base: str, rates: dict[str, str], effective_ms: int, now_ms: int) -> FxVersion:
        record = msgspec.json.encode(
            {"base": base, "rates": rates, "effective_ms": effective_ms, "set_ms": now_ms}
        )
        length = await self._redis.rpush(self._keys.fx_rates, record)
        return FxVersion(int(length), base, rates, effective_ms, now_ms)

    async def raw_versions(self) -> list[bytes]:
        """Every version as stored, for `decode_versions` off the event loop: versions are never removed,
        and a year of hourly updates of 30 rates took 30-55 ms to decode."""
        return await self._redis.lrange(self._keys.fx_rates, 0, -1)


def decode_versions(raws: list[bytes]) -> list[FxVersion]:
    out = []
    for index, raw in enumerate(raws, start=1):
        item = msgspec.json.decode(raw)
        out.append(FxVersion(index, item["base"], item["rates"], item["effective_ms"], item["set_ms"]))
    return out
