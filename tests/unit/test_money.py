"""Money bounds, edge by edge (just under, at and over each bound), and a property: any order the bounds
accept books amounts within them that sum exactly; any order they refuse books nothing but a flag."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import ledger, money, rules
from attribution.ledger import CANCELLED, CREATED, Item, OrderEvent

PRICE, QTY, TOTAL = money.MAX_UNIT_PRICE_MINOR, money.MAX_QUANTITY, money.MAX_ORDER_TOTAL_MINOR
ITEMS = money.MAX_ITEMS_PER_ORDER


@pytest.mark.parametrize(
    ("price", "quantity", "total"),
    [
        (0, 1, 0),
        (PRICE, 1, PRICE),  # price at its bound
        (PRICE - 1, 1, PRICE - 1),
        (1, QTY, QTY),  # quantity at its bound
        (10**7, QTY, TOTAL),  # line total exactly at the order bound
        (PRICE, 10, TOTAL),
        (PRICE, 9, TOTAL - PRICE),
        (10**7 - 1, QTY, TOTAL - QTY),  # just under
    ],
)
def test_line_totals_within_bounds(price: int, quantity: int, total: int) -> None:
    assert money.line_total_minor(price, quantity) == total


@pytest.mark.parametrize(
    ("price", "quantity", "message"),
    [
        (PRICE + 1, 1, "unit_price_minor"),  # price just over its bound
        (-1, 1, "unit_price_minor"),
        (1, QTY + 1, "quantity"),  # quantity just over
        (1, 0, "quantity"),
        (1, -5, "quantity"),
        (10**7 + 1, QTY, "line total"),  # line total just over the order bound
        (PRICE, 11, "line total"),
        (PRICE, QTY, "line total"),  # both fields at their own bound: 10^18, the original overflow
    ],
)
def test_line_totals_out_of_bounds(price: int, quantity: int, message: str) -> None:
    with pytest.raises(money.AmountOutOfRange, match=message):
        money.line_total_minor(price, quantity)


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([], None),
        ([(1, 1)] * ITEMS, None),  # item count at its bound
        ([(1, 1)] * (ITEMS + 1), "more than 1000 items"),
        ([(PRICE, 5), (PRICE, 5)], None),  # order total exactly at the bound
        ([(PRICE, 5), (PRICE, 5), (1, 1)], "order total"),  # one minor unit over
        ([(PRICE, 5), (PRICE, 4), (PRICE - 1, 1)], None),  # one under
        ([(PRICE, 1)] * 11, "order total"),  # every line fine, the sum is not
        ([(PRICE, QTY)] * ITEMS, "line total"),  # the example: 10^21 minor units
        ([(10**9, 1000)] * 11, "order total"),
    ],
)
def test_order_totals(lines: list[tuple[int, int]], problem: str | None) -> None:
    found = money.amount_problem(lines)
    assert (found is None) if problem is None else (problem in found)
    assert money.items_problem([Item("S", p, q) for p, q in lines]) == found


@given(lines=st.lists(st.tuples(st.integers(-1, PRICE + 1), st.integers(0, QTY + 1)), max_size=12))
def test_items_are_checked_as_their_pairs(lines: list[tuple[int, int]]) -> None:
    """The attributor checks an order's items in place: the same verdict and words as for the pairs."""
    assert money.items_problem(tuple(Item("S", p, q) for p, q in lines)) == money.amount_problem(lines)


@pytest.mark.parametrize(
    ("price", "quantity", "bps"),
    [(PRICE + 1, 1, 100), (1, QTY + 1, 100), (PRICE, 11, 100), (100, 1, 10_001), (100, 1, -1)],
)
def test_commission_is_checked(price: int, quantity: int, bps: int) -> None:
    with pytest.raises(money.AmountOutOfRange):
        rules.commission_minor(price, quantity, bps)


def test_headroom_for_sums_over_many_orders() -> None:
    # every ledger row is at most an order total, so this many maximal orders still sum within Int64
    assert money.ORDERS_PER_INT64 >= 900_000
    assert money.ORDERS_PER_INT64 * TOTAL <= money.INT64_MAX < (money.ORDERS_PER_INT64 + 1) * TOTAL


# --- property ----------------------------------------------------------------------------------------
DAY = rules.MS_PER_DAY
T0 = 100 * DAY
CLICK = rules.ClickFacts("c" * 30, True, True, found=True, ts_ms=T0 - DAY, creator_id="al", merchant_id="m1")

# Prices and quantities near their bounds as often as anywhere else: that is where sums overflow.
prices = st.one_of(st.integers(0, PRICE), st.sampled_from([PRICE, PRICE - 1, 10**7, 10**9, 0, 1]))
quantities = st.one_of(st.integers(1, QTY), st.sampled_from([QTY, QTY - 1, 1, 10, 1000]))
item_lists = st.lists(st.tuples(prices, quantities), min_size=1, max_size=30)


@settings(max_examples=400, deadline=None)
@given(lines=item_lists, rate_bps=st.integers(0, money.BPS_DENOMINATOR), cancelled=st.booleans())
def test_accepted_orders_book_bounded_exact_amounts(lines, rate_bps: int, cancelled: bool) -> None:
    terms = ledger.Terms("m1", 30, 30, [rules.RateVersion(1, 0, rate_bps)], "EUR")
    items = tuple(Item(f"S{i}", p, q) for i, (p, q) in enumerate(lines))
    events = [OrderEvent("m1", "w1", CREATED, "A", "c" * 30, "EUR", T0, items)]
    if cancelled:
        events.append(OrderEvent("m1", "w2", CANCELLED, "A", "c" * 30, "EUR", T0 + 1))
    entries = ledger.desired(events, CLICK, terms, now_ms=T0 + 31 * DAY)  # past the lock: approvals too
    total = sum(p * q for p, q in lines)  # Python integers: exact whatever the size
    if total > TOTAL:
        assert [(e.kind, e.reason, e.amount_minor) for e in entries] == [
            (ledger.KIND_FLAG, money.REASON_AMOUNT_OUT_OF_RANGE, 0)
        ]
        return
    assert money.amount_problem(lines) is None
    for entry in entries:
        assert abs(entry.amount_minor) <= TOTAL and 0 <= entry.basis_minor <= TOTAL
    accrued = [e.amount_minor for e in entries if e.kind == "accrual"]
    # each line exactly half-even of its product, and the order's sum never more than its basis
    assert accrued == [rules.half_even(p * q * rate_bps, money.BPS_DENOMINATOR) for p, q in lines]
    assert 0 <= sum(accrued) <= total <= TOTAL
    balance = sum(e.amount_minor for e in entries)
    assert balance == (0 if cancelled else sum(accrued))
    assert sum(e.amount_minor for e in entries if e.kind == "approval") == 0
