"""Commission rules, table-driven: rounding, precedence, version at click time, eligibility, windows."""

from __future__ import annotations

import pytest

from attribution import rules
from attribution.rules import ClickFacts, RateVersion

DAY = rules.MS_PER_DAY


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (25, 10, 2),  # 2.5 → even below
        (35, 10, 4),  # 3.5 → even above
        (26, 10, 3),
        (24, 10, 2),
        (-25, 10, -2),
        (-35, 10, -4),
        (0, 10, 0),
        (5, 10, 0),  # 0.5 → 0
        (15, 10, 2),  # 1.5 → 2
    ],
)
def test_half_even(numerator: int, denominator: int, expected: int) -> None:
    assert rules.half_even(numerator, denominator) == expected


@pytest.mark.parametrize(
    ("price", "quantity", "bps", "expected"),
    [
        (5990, 2, 800, 958),  # 958.4
        (5990, 1, 850, 509),  # 509.15
        (1, 1, 5000, 0),  # 0.5 → 0 (even)
        (3, 1, 5000, 2),  # 1.5 → 2 (even)
        (125, 1, 400, 5),  # exact
        (999_999, 3, 10_000, 2_999_997),  # 100 %
        (5990, 2, 0, 0),
    ],
)
def test_commission_per_line(price: int, quantity: int, bps: int, expected: int) -> None:
    assert rules.commission_minor(price, quantity, bps) == expected


VERSION = RateVersion(
    version=3,
    effective_ms=0,
    default_bps=500,
    categories={"shoes": 1200},
    skus={"SKU-1": 900},
    creators={"alice": 1500},
)


@pytest.mark.parametrize(
    ("creator", "sku", "category", "rate", "rule"),
    [
        ("alice", "SKU-1", "shoes", 1500, "creator"),  # creator beats everything
        ("bob", "SKU-1", "shoes", 900, "sku"),  # product beats category
        ("bob", "SKU-2", "shoes", 1200, "category"),
        ("bob", "SKU-2", "hats", 500, "default"),
        ("bob", "SKU-2", "", 500, "default"),
    ],
)
def test_rate_precedence(creator: str, sku: str, category: str, rate: int, rule: str) -> None:
    assert rules.rate_for(VERSION, creator, sku, category) == rules.AppliedRate(rate, rule, 3)


VERSIONS = [RateVersion(1, 1_000, 800), RateVersion(2, 5_000, 400), RateVersion(3, 9_000, 1_000)]


@pytest.mark.parametrize(
    ("click_ms", "version"),
    [
        (0, 1),  # click before the merchant's first version (domain claimed later): the first rates
        (1_000, 1),  # exactly at the start of version 1
        (4_999, 1),  # a cut at 5 000 does not touch a click just before it
        (5_000, 2),
        (8_999, 2),
        (9_000, 3),  # a raise applies from its time on
        (10**13, 3),
    ],
)
def test_version_at_click_time(click_ms: int, version: int) -> None:
    assert rules.version_at(VERSIONS, click_ms).version == version


def _click(**overrides) -> ClickFacts:
    base = dict(
        click_id="c" * 30,
        well_formed=True,
        mac_valid=True,
        found=True,
        ts_ms=10 * DAY,
        creator_id="alice",
        merchant_id="m1",
        dest_host="shop.example",
        host_owner="m1",
    )
    return ClickFacts(**{**base, **overrides})


@pytest.mark.parametrize(
    ("click", "order_ms", "reason"),
    [
        (_click(), 10 * DAY, None),  # same millisecond
        (_click(), 40 * DAY, None),  # exactly 30 days: inclusive
        (_click(), 40 * DAY + 1, rules.REASON_EXPIRED),
        (_click(), 10 * DAY - 1, None),  # a millisecond before its click: clock skew, forgiven
        (_click(click_id=""), 11 * DAY, rules.REASON_NO_CLICK_ID),
        (_click(well_formed=False, mac_valid=False), 11 * DAY, rules.REASON_INVALID_CLICK_ID),
        (_click(mac_valid=False), 11 * DAY, rules.REASON_INVALID_CLICK_ID),
        (_click(found=False), 11 * DAY, rules.REASON_NO_CLICK),
        (_click(is_head=True), 11 * DAY, rules.REASON_PREVIEW),
        (_click(is_bot=True), 11 * DAY, rules.REASON_BOT),
        (_click(merchant_id="m2", host_owner="m2"), 11 * DAY, rules.REASON_FOREIGN_MERCHANT),
        # recorded for another merchant: never moves, even if m1 owns the host now
        (_click(merchant_id="m2", host_owner="m1"), 11 * DAY, rules.REASON_FOREIGN_MERCHANT),
        # recorded before anyone owned the host, claimed by m1 since: credited
        (_click(merchant_id="", host_owner="m1"), 11 * DAY, None),
        (_click(merchant_id="", host_owner=""), 11 * DAY, rules.REASON_FOREIGN_MERCHANT),
        (_click(merchant_id="", host_owner="m2"), 11 * DAY, rules.REASON_FOREIGN_MERCHANT),
        # another merchant's preview or bot click: refused as that merchant's, not told what it was
        (_click(merchant_id="m2", is_bot=True), 11 * DAY, rules.REASON_FOREIGN_MERCHANT),
        (_click(merchant_id="m2", is_head=True), 11 * DAY, rules.REASON_FOREIGN_MERCHANT),
        (
            _click(merchant_id="", host_owner="", is_bot=True, is_head=True),
            11 * DAY,
            rules.REASON_FOREIGN_MERCHANT,
        ),
    ],
)
def test_ineligibility(click: ClickFacts, order_ms: int, reason: str | None) -> None:
    assert rules.ineligibility(click, "m1", order_ms, window_days=30) == reason


SKEW = rules.CLOCK_SKEW_TOLERANCE_MS


@pytest.mark.parametrize(
    ("click_ms", "order_ms", "reason"),
    [
        (10_000_750, 10_000_000, None),  # occurred_at in whole seconds, click later in the same second
        (10_000_999, 10_000_000, None),
        (10_000_000, 10_000_000 - SKEW, None),  # exactly the tolerance before the click
        (10_000_000, 10_000_000 - SKEW + 1, None),
        (10_000_000, 10_000_000 - SKEW - 1, rules.REASON_BEFORE_CLICK),  # just past it
        (10_000_000, 10_000_000 - DAY, rules.REASON_BEFORE_CLICK),
        (10_000_000, 10_000_000 + 30 * DAY, None),  # the far edge of the window is unchanged
        (10_000_000, 10_000_000 + 30 * DAY + 1, rules.REASON_EXPIRED),
    ],
)
def test_order_stamped_slightly_before_its_click(click_ms: int, order_ms: int, reason: str | None) -> None:
    assert rules.window_reason(click_ms, order_ms, window_days=30) == reason
    assert rules.ineligibility(_click(ts_ms=click_ms), "m1", order_ms, window_days=30) == reason


def test_lock_time() -> None:
    assert rules.lock_ms(5, 30) == 5 + 30 * DAY
