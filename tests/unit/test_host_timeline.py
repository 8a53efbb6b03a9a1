"""Who owned a host since when (core/domains.py host_timeline), and a click judged by the owner its host
had when the order was first received (rules.as_of): table-driven."""

from __future__ import annotations

import pytest

from attribution import rules
from core.domains import host_timeline

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
    ("received_ms", "owner"),
    [(0, "m2"), (1, ""), (T - 1, ""), (T, "m1"), (2 * T - 1, "m1"), (2 * T, "m2"), (3 * T, "m2")],
)
def test_a_click_is_judged_by_the_owner_when_the_order_came(received_ms: int, owner: str) -> None:
    judged = rules.as_of(CLICK, received_ms)
    assert judged.host_owner == owner
    assert rules.is_merchants(judged, "m1") == (owner == "m1")
    if received_ms:
        assert rules.as_of(judged, 3 * T) == judged  # resolved once: a second call changes nothing
