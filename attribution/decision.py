"""Who an order is credited to, through what, and whether it is held for review: one pure function,
`decide`, that the ledger books from and the trace renders (one source of truth).

- An order with an attributable click (rules.ineligibility says None) is credited by the click.
- Otherwise an order carrying a code of the merchant active at `occurred_at` is credited to the code's
  creator, at the code's own rate if it has one, else the usual precedence for that creator with the rate
  version in effect at `occurred_at` (codes have no window).
- When both exist and name different creators, the merchant's `attribution_priority` (the policy version
  in effect at `occurred_at`) picks.
- The review rules of that policy version are checked against the order's click when it belongs to the
  credited creator and to this merchant (a code order without such a click trips none).

"At `occurred_at`" is, for the versioned terms (codes, rates, policy), `terms_ms`: the order's time, or
its first receipt when that is earlier (ledger.Folded.terms_ms); the window and the review rules measure
from the order's own time.
"""

from __future__ import annotations

import msgspec

from attribution import codes, review, rules
from attribution.policy import PRIORITY_CODE, Policy, ReviewRules

BY_CLICK, BY_CODE = "click", "code"
# An order without a click id whose codes were none of them active at its time.
REASON_NO_ACTIVE_CODE = "no_active_code"
NO_REVIEW = ReviewRules()


# Structs, not frozen dataclasses: one or two of each per order booked (their __init__ is much cheaper).
class Credit(msgspec.Struct, frozen=True, gc=False):
    creator_id: str
    attributed_by: str  # click or code
    code: str = ""  # the code that credited it, as the merchant spelled it
    rate_at_ms: int = 0  # the rate version in effect at this time applies: the click's, or the order's
    rate_bps: int | None = None  # the code's own rate, overriding the rate tables
    review_reason: str = ""  # the tripped review rule, '' if none


class Decision(msgspec.Struct, frozen=True):
    click_reason: str | None  # why the click does not earn (None: it does)
    policy: Policy
    codes: list[codes.CodeCheck] = msgspec.field(default_factory=list)
    review: list[review.RuleCheck] = msgspec.field(default_factory=list)
    credit: Credit | None = None

    @property
    def outcome(self) -> str:
        if self.credit is not None:
            return "credited"
        if self.click_reason == rules.REASON_NO_CLICK_ID and self.codes:
            return REASON_NO_ACTIVE_CODE
        return self.click_reason or "refused"


def decide(
    click: rules.ClickFacts,
    merchant_id: str,
    window_days: int,
    order_ms: int,
    order_codes: tuple[str, ...],
    spans_by_code: dict[str, list[codes.Span]],
    policy: Policy,
    terms_ms: int | None = None,
) -> Decision:
    """`terms_ms`: when the codes and rate versions are read (ledger.Folded.terms_ms; default the
    order's time); the click's window and the review rules measure from the order's own time."""
    terms_ms = order_ms if terms_ms is None else terms_ms
    click_reason = rules.ineligibility(click, merchant_id, order_ms, window_days)
    checks = codes.check_order_codes(order_codes, spans_by_code, terms_ms) if order_codes else []
    via_code = None
    if checks and (chosen := codes.first_active(checks)) is not None and chosen.span is not None:
        span = chosen.span
        via_code = Credit(span.creator_id, BY_CODE, span.code, terms_ms, span.rate_bps)
    via_click = Credit(click.creator_id, BY_CLICK, "", click.ts_ms) if click_reason is None else None
    credit = pick(via_click, via_code, policy.attribution_priority)
    if credit is None:
        return Decision(click_reason, policy, checks)
    # The rules judge the click only when it is the credited creator's and this merchant's: another
    # creator's click says nothing about this one, and a click on another merchant's link (an order
    # credited by code) neither holds this order nor is told in its trace.
    if policy.review == NO_REVIEW:
        return Decision(click_reason, policy, checks, [], credit)
    judged = (
        click
        if click.found and click.creator_id == credit.creator_id and rules.is_merchants(click, merchant_id)
        else None
    )
    rule_checks = review.check(policy.review, judged, order_ms)
    held = review.held_reason(rule_checks)
    if held:
        credit = Credit(
            credit.creator_id, credit.attributed_by, credit.code, credit.rate_at_ms, credit.rate_bps, held
        )
    return Decision(click_reason, policy, checks, rule_checks, credit)


def pick(via_click: Credit | None, via_code: Credit | None, priority: str) -> Credit | None:
    """The click credits unless there is none, or the code names another creator and codes have
    priority."""
    if via_click is None:
        return via_code
    if via_code is not None and via_code.creator_id != via_click.creator_id and priority == PRIORITY_CODE:
        return via_code
    return via_click
