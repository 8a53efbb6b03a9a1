"""When an order's versioned terms (codes, rates, policy) are read: at its time, but never after we received
it (ledger.Folded.terms_ms). Every version takes effect when it is made, so for an order dated ahead
of its receipt (stored before the webhook refused such dates, or within its 5 minutes) a version made
after the booking could otherwise land before the order's time and move its credit on a rerun."""

from __future__ import annotations

import msgspec
import pytest

from attribution import codes, ledger, rules
from attribution.ledger import CREATED, REFUNDED, Item, OrderEvent
from attribution.policy import Policy, Snapshot

DAY = rules.MS_PER_DAY
HOUR = 3_600_000
RECEIVED = 100 * DAY
OCCURRED = RECEIVED + 2 * HOUR  # the sender's clock ran two hours ahead
BOOKED = RECEIVED + HOUR // 6
CHANGED = RECEIVED + HOUR  # after the first booking, before the order's own time
ITEMS = (Item("SKU-1", 5990, 2, "shoes"),)
NO_CLICK = rules.ClickFacts("", False, False)
ALICE_CLICK = rules.ClickFacts(
    "c" * 30, True, True, found=True, ts_ms=RECEIVED - DAY, creator_id="alice", merchant_id="m1"
)
RATES = [rules.RateVersion(1, 0, 800)]
SPRING = codes.put_spans([], "SPRING", "bob", None, 0)
CLICK_FIRST = (Policy(0, "click"),)


def _terms(spans=SPRING, versions=RATES, policies=CLICK_FIRST) -> ledger.Terms:
    return ledger.Terms("m1", 30, 30, versions, "EUR", codes={"SPRING": spans}, policy=Snapshot(policies))


# Each: the order's click, and the terms before and after one change made at CHANGED.
CHANGES = {
    "code_reassigned": (
        NO_CLICK,
        _terms(),
        _terms(spans=codes.put_spans(SPRING, "SPRING", "dave", None, CHANGED)),
    ),
    "code_removed": (NO_CLICK, _terms(), _terms(spans=codes.delete_spans(SPRING, CHANGED))),
    "code_given_its_own_rate": (
        NO_CLICK,
        _terms(),
        _terms(spans=codes.put_spans(SPRING, "SPRING", "bob", 2500, CHANGED)),
    ),
    "rates_raised": (NO_CLICK, _terms(), _terms(versions=[*RATES, rules.RateVersion(2, CHANGED, 1500)])),
    "priority_to_codes": (
        ALICE_CLICK,
        _terms(),
        _terms(policies=(Policy(0, "click"), Policy(CHANGED, "code"))),
    ),
}


def _order(received_ms: int, occurred_ms: int = OCCURRED) -> list[OrderEvent]:
    click_id = "c" * 30
    return [
        OrderEvent("m1", "w1", CREATED, "A-1", click_id, "EUR", occurred_ms, ITEMS, ("spring",), received_ms)
    ]


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_version_made_after_the_booking_moves_nothing(name: str) -> None:
    click, before, after = CHANGES[name]
    booked = ledger.desired(_order(RECEIVED), click, before, BOOKED)
    assert ledger.desired(_order(RECEIVED), click, after, CHANGED + 1) == booked
    assert ledger.desired(_order(RECEIVED), click, after, OCCURRED + DAY) == booked
    # The control: read at the order's own time, the same change moves the booking.
    assert ledger.desired(_order(0), click, after, CHANGED + 1) != ledger.desired(
        _order(0), click, before, BOOKED
    )


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_an_order_dated_before_its_receipt_still_reads_its_own_time(name: str) -> None:
    """The usual case, unchanged: an order sent late is judged by the versions of its own time, not
    those of its arrival (a change made in between does not apply to it)."""
    click, before, after = CHANGES[name]
    late = CHANGED + HOUR
    assert ledger.desired(_order(late, occurred_ms=BOOKED), click, after, late) == ledger.desired(
        _order(late, occurred_ms=BOOKED), click, before, late
    )
    assert ledger.desired(_order(late, occurred_ms=CHANGED + 1), click, after, late) != ledger.desired(
        _order(late, occurred_ms=CHANGED + 1), click, before, late
    )


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_second_created_event_received_later_moves_nothing(name: str) -> None:
    """The same order sent again under another webhook-id, received after the change: the fold keeps
    that copy (its id sorts first), but the terms stay read at the order's first receipt."""
    click, before, after = CHANGES[name]
    first = _order(RECEIVED)
    again = msgspec.structs.replace(first[0], webhook_id="w0", received_ms=CHANGED + 1)
    assert ledger.fold([*first, again]).created == again
    booked = _credit(ledger.desired(first, click, before, BOOKED))
    assert _credit(ledger.desired([*first, again], click, after, CHANGED + 2)) == booked
    assert _credit(ledger.desired([again, *first], click, after, CHANGED + 2)) == booked


def _credit(entries: list[ledger.Entry]) -> list[tuple]:
    """Who earns what, by which rule (the rows name the event they came from, which is the copy kept)."""
    return [(e.kind, e.creator_id, e.amount_minor, e.rate_bps, e.rate_rule, e.code) for e in entries]


def _refund(received_ms: int) -> OrderEvent:
    return OrderEvent("m1", "r1", REFUNDED, "A-1", "c" * 30, "EUR", OCCURRED + 1, ITEMS, (), received_ms)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (_order(RECEIVED), RECEIVED),
        (_order(RECEIVED, occurred_ms=RECEIVED), RECEIVED),
        (_order(RECEIVED, occurred_ms=RECEIVED - 1), RECEIVED - 1),  # sent late: its own time
        (_order(0), OCCURRED),  # not known (an event built without it): its own time
        ([*_order(RECEIVED), _refund(RECEIVED - 5)], RECEIVED - 5),  # its refund came first
        ([*_order(RECEIVED), _refund(0)], RECEIVED),
        ([_refund(RECEIVED + 5), *_order(RECEIVED)], RECEIVED),
    ],
)
def test_terms_time(events: list[OrderEvent], expected: int) -> None:
    assert ledger.fold(events).terms_ms == expected
