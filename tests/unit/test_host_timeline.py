"""Who owned a host since when (core/domains.py host_timeline), and a click judged by the owner its host
had when the order was first received (rules.as_of): table-driven."""

from __future__ import annotations

import msgspec
import pytest

from attribution import ledger, rules
from core.domains import history_entries, host_timeline

T = 1_000_000


@pytest.mark.parametrize(
    ("host", "current", "history", "timeline"),
    [
        ("shop.example", {}, {}, ((0, ""),)),  # nobody, ever
        # registered before histories were kept: its owner since 0
        ("shop.example", {"shop.example": "m1"}, {}, ((0, "m1"),)),
        ("www.shop.example", {"shop.example": "m1"}, {}, ((0, "m1"),)),
        # registered at T: nobody before
        ("shop.example", {"shop.example": "m1"}, {"shop.example": [(T, "m1")]}, ((0, ""), (T, "m1"))),
        # moved from m1 (kept since 0, before histories) to m2 at T
        (
            "shop.example",
            {"shop.example": "m2"},
            {"shop.example": [(0, "m1"), (T, "m2")]},
            ((0, "m1"), (T, "m2")),
        ),
        # a subdomain carved out of m1's parent at T: the host below it moves, a sibling does not
        (
            "a.shop.example",
            {"shop.example": "m1", "a.shop.example": "m2"},
            {"a.shop.example": [(T, "m2")]},
            ((0, "m1"), (T, "m2")),
        ),
        (
            "b.shop.example",
            {"shop.example": "m1", "a.shop.example": "m2"},
            {"a.shop.example": [(T, "m2")]},
            ((0, "m1"),),
        ),
        # a parent registered later does not take a host whose own domain was registered first
        (
            "shop.brand.example",
            {"shop.brand.example": "m1", "brand.example": "m2"},
            {"shop.brand.example": [(T, "m1")], "brand.example": [(2 * T, "m2")]},
            ((0, ""), (T, "m1")),
        ),
        # the parent first, then the more specific domain
        (
            "shop.brand.example",
            {"shop.brand.example": "m1", "brand.example": "m2"},
            {"shop.brand.example": [(2 * T, "m1")], "brand.example": [(T, "m2")]},
            ((0, ""), (T, "m2"), (2 * T, "m1")),
        ),
    ],
)
def test_host_timeline(host, current, history, timeline) -> None:
    assert host_timeline(host, current, history) == timeline


CLICK = rules.ClickFacts(
    "c1", True, True, found=True, host_owner="m2", host_owners=((0, ""), (T, "m1"), (2 * T, "m2"))
)


@pytest.mark.parametrize(
    ("received_ms", "merchant_id", "owner"),
    [
        (0, "m1", "m2"),  # not known: the owner now
        (T // 2, "m1", ""),
        (T + 1, "m1", "m1"),
        (2 * T + T // 2, "m1", "m2"),
        (2 * T + T // 2, "m2", "m2"),
        (3 * T, "m1", "m2"),
    ],
)
def test_a_click_is_judged_by_the_owner_when_the_order_came(received_ms, merchant_id, owner) -> None:
    judged = rules.as_of(CLICK, received_ms, merchant_id)
    assert judged.host_owner == owner
    assert rules.is_merchants(judged, "m1") == (owner == "m1")
    if received_ms:
        assert rules.as_of(judged, 3 * T, "m1") == judged  # resolved once: a second call changes nothing


TOLERANCE = rules.CLOCK_SKEW_TOLERANCE_MS
MOVED = ((0, ""), (T, "m1"), (2 * T, "m2"))


@pytest.mark.parametrize(
    ("at_ms", "merchant_id", "owner"),
    [
        (T + 10, "m1", "m1"),
        (T + 10, "m2", "m1"),  # m2 took it much later
        (T - 10, "m1", "m1"),  # received a moment before m1's registration stamp: clocks differ
        (T - TOLERANCE - 1, "m1", ""),  # too long before
        (2 * T + 10, "m1", "m1"),  # a moment after the move away from m1
        (2 * T + TOLERANCE + 1, "m1", "m2"),
        (2 * T - 10, "m2", "m2"),  # a moment before m2's stamp
        (2 * T - 10, "m3", "m1"),  # never an owner: the owner then
        (5 * T, "", "m2"),
    ],
)
def test_owner_near_prefers_the_orders_merchant_within_the_clock_tolerance(at_ms, merchant_id, owner) -> None:
    assert rules.owner_near(MOVED, at_ms, merchant_id) == owner


@pytest.mark.parametrize(
    ("owned", "latest", "now_ms", "entries"),
    [
        ({}, {}, T, [("d.example", f"{T}:m2")]),  # a new domain
        ({"d.example": "m1"}, {}, T, [("d.example", "0:m1"), ("d.example", f"{T}:m2")]),  # taken, no history
        ({"d.example": "m1"}, {"d.example": b"5:m1"}, T, [("d.example", f"{T}:m2")]),
        # this machine's clock is behind the last entry (another node's, or a retry after a WatchError)
        ({"d.example": "m1"}, {"d.example": f"{2 * T}:m1".encode()}, T, [("d.example", f"{2 * T + 1}:m2")]),
    ],
)
def test_history_entries(owned, latest, now_ms, entries) -> None:
    assert history_entries("m2", ["d.example"], owned, latest, now_ms) == entries


def test_an_owner_stamped_behind_the_one_before_still_shows_in_the_timeline() -> None:
    """helper-74: m1's node 60 s ahead, m2 taking the domain 30 s later. Dated at the same time as m1's
    entry, m2's hid m1 altogether, and m1's order received meanwhile was another merchant's."""
    m1_at = T + 60_000
    [(_, entry)] = history_entries(
        "m2", ["shop.example"], {"shop.example": "m1"}, {"shop.example": f"{m1_at}:m1".encode()}, T + 30_000
    )
    since = int(entry.split(":")[0])
    timeline = host_timeline(
        "shop.example", {"shop.example": "m2"}, {"shop.example": [(m1_at, "m1"), (since, "m2")]}
    )
    assert timeline == ((0, ""), (m1_at, "m1"), (m1_at + 1, "m2"))
    assert rules.owner_near(timeline, m1_at + 10_000, "m1") == "m1"


@pytest.mark.parametrize(
    ("created_received_ms", "refund_received_ms", "registered_ms", "judged_ms"),
    [
        (5 * T, 9 * T, 0, 5 * T),  # the first receipt
        (5 * T, 4 * T, 0, 4 * T),  # a refund heard of first (parked): the first receipt of any event
        (0, 9 * T, 0, 3 * T),  # created stored without a receipt: its time, not the refund's receipt
        (0, 9 * T, 7 * T, 7 * T),  # ... never before its merchant registered
        (0, 0, 2 * T, 3 * T),
    ],
)
def test_when_an_order_was_first_received(
    created_received_ms, refund_received_ms, registered_ms, judged_ms
) -> None:
    created = ledger.OrderEvent(
        "m1", "w1", "order.created", "O-1", "c1", "EUR", 3 * T, (), (), created_received_ms
    )
    refund = msgspec.structs.replace(
        created, webhook_id="w2", type="order.refunded", received_ms=refund_received_ms
    )
    assert ledger.fold([created, refund]).judged_ms(registered_ms) == judged_ms
