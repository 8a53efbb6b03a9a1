"""Money bounds and checked arithmetic: every amount the ledger can book, and every sum of such amounts a
report is likely to take, fits ClickHouse's Int64 exactly.

ClickHouse does not fail on overflow: `sum(amount_minor)` over Int64 silently wraps to a negative number.
The per-field limits alone do not prevent it (10^12 × 10^6 × 1,000 items is 10^21), so the products and
sums are bounded too, here, in one place, and the webhook schema, the pure rules and the ledger all use
these numbers:

- a line total (`unit_price_minor × quantity`) and an order total (the sum of its lines) are at most
  `MAX_ORDER_TOTAL_MINOR` (10^13 minor units: 100 billion in a two-decimal currency, about 6 million US
  dollars even in Indonesian rupiah, the ISO currency with the smallest minor unit in common use);
- a rate is at most 100 % (`BPS_DENOMINATOR`), so a line's commission never exceeds its basis, and every
  ledger row (accrual, reversal, approval transfer) of an order is at most the order total;
- hence Int64 holds the sum of `ORDERS_PER_INT64` (922,337) maximal orders: no real creator's balance in
  one currency comes near it, and the earnings report still checks its sums (report.py) rather than
  trusting this arithmetic alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

INT64_MAX = 2**63 - 1
# Per field: prices past 10^12 minor units (10 billion in a two-decimal currency) are input errors.
MAX_UNIT_PRICE_MINOR = 10**12
# Per field: a million units of one SKU in one order is already far past any shop's order.
MAX_QUANTITY = 1_000_000
# Per order: item lines in one order event (the webhook body is also capped at 256 KiB).
MAX_ITEMS_PER_ORDER = 1_000
# Per line and per order: see the module docstring; leaves room for ~10^6 maximal orders in one Int64 sum.
MAX_ORDER_TOTAL_MINOR = 10**13
# A rate of 10,000 basis points is 100 %: commission never exceeds its basis.
BPS_DENOMINATOR = 10_000
ORDERS_PER_INT64 = INT64_MAX // MAX_ORDER_TOTAL_MINOR

REASON_AMOUNT_OUT_OF_RANGE = "amount_out_of_range"


class AmountOutOfRange(ValueError):
    """An amount that cannot be booked exactly; the message says which bound it passes."""


def line_total_minor(unit_price_minor: int, quantity: int) -> int:
    """`unit_price_minor × quantity`, checked: each factor within its field limit, the product within the
    order total (a line is part of an order)."""
    if not 0 <= unit_price_minor <= MAX_UNIT_PRICE_MINOR:
        raise AmountOutOfRange(f"unit_price_minor {unit_price_minor} is not within 0..{MAX_UNIT_PRICE_MINOR}")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise AmountOutOfRange(f"quantity {quantity} is not within 1..{MAX_QUANTITY}")
    total = unit_price_minor * quantity
    if total > MAX_ORDER_TOTAL_MINOR:
        raise AmountOutOfRange(
            f"line total {unit_price_minor} × {quantity} = {total} exceeds {MAX_ORDER_TOTAL_MINOR} minor"
        )
    return total


class Line(Protocol):
    unit_price_minor: int
    quantity: int


class _Pair(NamedTuple):
    unit_price_minor: int
    quantity: int


def items_total_minor(items: Iterable[Line]) -> int:
    """The sum of an order's lines, checked line by line and as a whole: the one loop every check of an
    order's amounts goes through."""
    total = 0
    for count, item in enumerate(items, start=1):
        if count > MAX_ITEMS_PER_ORDER:
            raise AmountOutOfRange(f"more than {MAX_ITEMS_PER_ORDER} items in one order")
        total += line_total_minor(item.unit_price_minor, item.quantity)
        if total > MAX_ORDER_TOTAL_MINOR:
            raise AmountOutOfRange(f"order total exceeds {MAX_ORDER_TOTAL_MINOR} minor units")
    return total


def order_total_minor(lines: Iterable[tuple[int, int]]) -> int:
    """`items_total_minor` of `(unit_price_minor, quantity)` pairs."""
    return items_total_minor(map(_Pair._make, lines))


def amount_problem(lines: Iterable[tuple[int, int]]) -> str | None:
    """Why these lines cannot be booked exactly (the reason in words), or None when they can."""
    return items_problem(map(_Pair._make, lines))


def items_problem(items: Iterable[Line]) -> str | None:
    """`amount_problem` of an order's items read in place: the attributor checks every order it books,
    and building a pair per line cost more than the check."""
    try:
        items_total_minor(items)
    except AmountOutOfRange as exc:
        return str(exc)
    return None


def check_rate_bps(rate_bps: int) -> int:
    if not 0 <= rate_bps <= BPS_DENOMINATOR:
        raise AmountOutOfRange(f"rate {rate_bps} bps is not within 0..{BPS_DENOMINATOR}")
    return rate_bps
