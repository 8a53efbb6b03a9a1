"""Commission rules: pure functions over plain data. No I/O; the clock is always passed in.

Every amount is integer minor units, every rate integer basis points. Commission per item line is
`unit_price_minor × quantity × rate_bps / 10000`, rounded half-even per line, in checked arithmetic: the
bounds in money.py keep every line, order and sum within Int64. The rate comes, most
specific first, from: creator override, product (SKU), category, merchant default, all taken from the
rate version in effect when the click happened.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import msgspec

from attribution import money

BPS_DENOMINATOR = money.BPS_DENOMINATOR
MS_PER_DAY = 86_400_000
# An order may be stamped up to this long before its click and still earn. A real order cannot precede
# the click whose id it carries (the id only exists once the viewer was redirected), so an earlier stamp
# is clock skew: `occurred_at` often carries whole seconds (up to 999 ms early) and a merchant's clock may
# lag ours. Two minutes forgives any NTP-kept clock and is negligible next to a window of days.
CLOCK_SKEW_TOLERANCE_MS = 120_000


def half_even(numerator: int, denominator: int) -> int:
    """`numerator / denominator` rounded to the nearest integer, ties to even (banker's rounding)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    quotient, remainder = divmod(abs(numerator), denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return sign * quotient


def commission_minor(unit_price_minor: int, quantity: int, rate_bps: int) -> int:
    """Never more than the line's basis; raises money.AmountOutOfRange past any bound."""
    basis = money.line_total_minor(unit_price_minor, quantity)
    return half_even(basis * money.check_rate_bps(rate_bps), BPS_DENOMINATOR)


@dataclass(frozen=True, slots=True)
class RateVersion:
    """One complete rate table, in effect from `effective_ms` until the next version. `skus` is a dict, or
    the `SkuRates` of this version when read from the store (every version shares one set of histories)."""

    version: int
    effective_ms: int
    default_bps: int
    categories: dict[str, int] = field(default_factory=dict)
    skus: Mapping[str, int] = field(default_factory=dict)
    creators: dict[str, int] = field(default_factory=dict)


# A SKU's rate changes: the versions that changed it (ascending) and the rate each set (None: cleared).
SkuHistory = tuple[tuple[int, ...], tuple[int | None, ...]]


class SkuRates(Mapping[str, int]):
    """The SKU rates of one version, read from the histories every version of a merchant shares: a SKU's
    rate at version v is the one its latest change at or before v set. Holding a table per version held
    every SKU once per version (a catalog of 50,000 SKUs changed 80 times: 4 million entries)."""

    __slots__ = ("_histories", "_version")

    def __init__(self, histories: dict[str, SkuHistory], version: int) -> None:
        self._histories = histories
        self._version = version

    def get(self, sku: str, default=None):
        history = self._histories.get(sku)
        if history is None:
            return default
        versions, rates = history
        found = bisect_right(versions, self._version)
        rate = rates[found - 1] if found else None
        return default if rate is None else rate

    def __getitem__(self, sku: str) -> int:
        rate = self.get(sku)
        if rate is None:
            raise KeyError(sku)
        return rate

    def __contains__(self, sku: object) -> bool:
        return isinstance(sku, str) and self.get(sku) is not None

    def __iter__(self) -> Iterator[str]:
        return (sku for sku in self._histories if self.get(sku) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


# msgspec Structs, not frozen dataclasses: the attributor makes one or more per order, and a frozen
# dataclass's __init__ costs several times a Struct's (py-spy, benchmarks/attribution.py).
class AppliedRate(msgspec.Struct, frozen=True, gc=False):
    rate_bps: int
    rule: str  # "creator", "sku", "category" or "default": which rule won, for disputes
    version: int


def version_at(versions: list[RateVersion], at_ms: int) -> RateVersion:
    """The version in effect at `at_ms`: the latest that started at or before it. A click from before the
    merchant's first version (a domain claimed later) earns the first version: there was no earlier rate."""
    if not versions:
        raise ValueError("a merchant always has at least one rate version")
    chosen = versions[0]
    if len(versions) == 1:
        return chosen  # a merchant whose rates never changed: nothing to sort (once per order booked)
    for candidate in sorted(versions, key=lambda v: (v.effective_ms, v.version)):
        if candidate.effective_ms <= at_ms:
            chosen = candidate
    return chosen


def rate_for(version: RateVersion, creator_id: str, sku: str, category: str) -> AppliedRate:
    """Most specific rule first: creator override, SKU, category, merchant default."""
    if creator_id in version.creators:
        return AppliedRate(version.creators[creator_id], "creator", version.version)
    sku_bps = version.skus.get(sku)  # one lookup: a stored version's SKU rates are histories (SkuRates)
    if sku_bps is not None:
        return AppliedRate(sku_bps, "sku", version.version)
    if category and category in version.categories:
        return AppliedRate(version.categories[category], "category", version.version)
    return AppliedRate(version.default_bps, "default", version.version)


# --- click eligibility ------------------------------------------------------------------------------


class ClickFacts(msgspec.Struct, frozen=True, gc=False):
    """What the attributor knows of the click an order carries (None fields: not found)."""

    click_id: str
    well_formed: bool
    mac_valid: bool
    found: bool = False
    ts_ms: int = 0
    creator_id: str = ""
    merchant_id: str = ""  # as recorded: '' when no merchant owned the host at click time
    dest_host: str = ""
    host_owner: str = ""  # the merchant owning dest_host now ('' if none), or when the order came (as_of)
    host_owners: tuple[tuple[int, str], ...] = ()  # (since_ms, owner) of dest_host: domains.host_timeline
    is_bot: bool = False
    is_head: bool = False
    code: str = ""  # the link's code (for the trace)
    # human clicks from this click's IP hash on the creator's links in its clock hour (review.py); filled
    # only when a review rule needs it
    ip_hour_clicks: int = 0
    # what `ip_hour_clicks` sums, for `as_of` to count again for the owners when the order came: per
    # (merchant_id as recorded, its host's timeline when recorded for nobody, else ()) the clicks
    ip_hour_groups: tuple[tuple[str, tuple[tuple[int, str], ...], int], ...] = ()


# Reasons an order earns nothing. "no_click" is retried on later runs (the click may not be ingested yet).
REASON_NO_CLICK_ID = "no_click_id"
REASON_INVALID_CLICK_ID = "invalid_click_id"
REASON_NO_CLICK = "no_click"
REASON_PREVIEW = "preview"
REASON_BOT = "bot"
REASON_FOREIGN_MERCHANT = "foreign_merchant"
REASON_BEFORE_CLICK = "order_before_click"
REASON_EXPIRED = "expired"


def ineligibility(click: ClickFacts, merchant_id: str, order_ms: int, window_days: int) -> str | None:
    """Why the click does not earn this merchant's order a commission, or None when it does.

    A click recorded before its host had an owner (merchant_id '') counts for the merchant that owned the
    host when the order was first received (`as_of`; the owner now where that is not known): that is how
    a merchant that registers a domain later claims earlier clicks, and why a domain an admin moves to
    another merchant later does not take the clicks of orders received before. A click that was recorded
    for another merchant never moves. Another merchant's click is refused for that before
    anything else about it is told (a preview, a bot): what it was is that merchant's business."""
    if not click.click_id:
        return REASON_NO_CLICK_ID
    if not (click.well_formed and click.mac_valid):
        return REASON_INVALID_CLICK_ID
    if not click.found:
        return REASON_NO_CLICK
    if not is_merchants(click, merchant_id):
        return REASON_FOREIGN_MERCHANT
    if click.is_head:
        return REASON_PREVIEW
    if click.is_bot:
        return REASON_BOT
    return window_reason(click.ts_ms, order_ms, window_days)


def owner_near(timeline: tuple[tuple[int, str], ...], at_ms: int, merchant_id: str) -> str:
    """The owner a host's timeline (domains.host_timeline: (since_ms, owner) ascending) gives at `at_ms`,
    except that `merchant_id` is given if it owned the host at any time within CLOCK_SKEW_TOLERANCE_MS of
    `at_ms`: an order's receipt and a registration are stamped by different machines' clocks, and an
    order is never really received before its merchant registered the domain."""
    low, high = at_ms - CLOCK_SKEW_TOLERANCE_MS, at_ms + CLOCK_SKEW_TOLERANCE_MS
    owner = ""
    for index, (since_ms, who) in enumerate(timeline):
        if since_ms > high:
            break
        until_ms = timeline[index + 1][0] if index + 1 < len(timeline) else None
        if merchant_id and who == merchant_id and (until_ms is None or until_ms > low):
            return merchant_id
        if since_ms <= at_ms:
            owner = who
    return owner


def as_of(click: ClickFacts, received_ms: int, merchant_id: str) -> ClickFacts:
    """The click as `merchant_id`'s order first received at `received_ms` sees it: `host_owner` the owner
    of its host then (`owner_near`), and `ip_hour_clicks` counted for the merchant the click then counts
    for. 0: not known, the owners now are kept. The timelines are then dropped, so a second call changes
    nothing."""
    if received_ms <= 0 or not (click.host_owners or click.ip_hour_groups):
        return click
    owner = owner_near(click.host_owners, received_ms, merchant_id) if click.host_owners else click.host_owner
    counted_for = click.merchant_id or owner
    count = click.ip_hour_clicks
    if click.ip_hour_groups:
        count = ip_hour_count(click.ip_hour_groups, counted_for, received_ms)
    return msgspec.structs.replace(
        click, host_owner=owner, host_owners=(), ip_hour_clicks=count, ip_hour_groups=()
    )


def ip_hour_count(
    groups: tuple[tuple[str, tuple[tuple[int, str], ...], int], ...], counted_for: str, at_ms: int | None
) -> int:
    """The clicks of `groups` (ClickFacts.ip_hour_groups) that count for `counted_for`: recorded for it, or
    for nobody on a host it owned at `at_ms` (`owner_near`; None: it owns now, the timeline's last owner)."""
    total = 0
    for recorded_for, timeline, clicks in groups:
        if not recorded_for:
            if at_ms is None:
                recorded_for = timeline[-1][1] if timeline else ""
            else:
                recorded_for = owner_near(timeline, at_ms, counted_for)
        if recorded_for == counted_for:
            total += clicks
    return total


def is_merchants(click: ClickFacts, merchant_id: str) -> bool:
    """Whether a found click counts for `merchant_id`: recorded for it, or for nobody on a host it owns."""
    return (click.merchant_id or click.host_owner) == merchant_id


def window_reason(click_ms: int, order_ms: int, window_days: int) -> str | None:
    """The window is inclusive: an order exactly `window_days` after its click still earns, and so does
    one stamped up to CLOCK_SKEW_TOLERANCE_MS before it."""
    if order_ms < click_ms - CLOCK_SKEW_TOLERANCE_MS:
        return REASON_BEFORE_CLICK
    if order_ms - click_ms > window_days * MS_PER_DAY:
        return REASON_EXPIRED
    return None


def lock_ms(order_ms: int, lock_days: int) -> int:
    """When an order's commission moves from pending to approved."""
    return order_ms + lock_days * MS_PER_DAY
