"""A merchant's attribution policy: which of a click and a discount code wins when they name different
creators (`attribution_priority`), and the review rules that hold suspicious accruals (`review`).

Both are versioned like rates: every change is kept with its time in the merchant record (`policies`),
and an order is judged by the version in effect at its `occurred_at` (its first receipt, if earlier:
ledger.Folded.terms_ms). So a rerun of the attributor, or a late event, never moves an order booked under
earlier terms to another creator or status.

`PATCH /api/merchants/{id}` is a table of settable fields, each with its validator (`SETTABLE`): adding a
field is one more entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from attribution import currency

PRIORITY_CLICK = "click"
PRIORITY_CODE = "code"
PRIORITIES = (PRIORITY_CLICK, PRIORITY_CODE)
# A week between click and order is already more than any fraud rule needs; the bound keeps it an int.
MAX_MIN_CLICK_TO_ORDER_S = 7 * 86_400
# Past a million human clicks from one IP in an hour the rule means nothing; the bound keeps it an int.
MAX_CLICKS_PER_IP_HOUR = 1_000_000
# Policy versions kept per merchant: each PATCH appends one, and the attributor reads them all.
MAX_POLICY_VERSIONS = 1_000


class ReviewRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """0 turns a rule off."""

    min_click_to_order_s: int = 0
    max_clicks_per_ip_hour: int = 0


class Policy(msgspec.Struct, frozen=True):
    """One version of the policy, in effect from `effective_ms` until the next."""

    effective_ms: int
    attribution_priority: str = PRIORITY_CLICK
    review: ReviewRules = ReviewRules()


DEFAULT_POLICY = Policy(0)


class InvalidField(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def check_priority(value: Any) -> str:
    if value not in PRIORITIES:
        raise InvalidField("attribution_priority", 'must be "click" or "code"')
    return value


def check_review(value: Any) -> ReviewRules:
    if isinstance(value, ReviewRules):
        value = msgspec.structs.asdict(value)
    if not isinstance(value, dict):
        raise InvalidField("review", "must be an object")
    try:
        rules = msgspec.convert(value, ReviewRules)
    except msgspec.ValidationError as exc:
        raise InvalidField("review", str(exc)) from None
    bounds = {
        "min_click_to_order_s": MAX_MIN_CLICK_TO_ORDER_S,
        "max_clicks_per_ip_hour": MAX_CLICKS_PER_IP_HOUR,
    }
    for name, bound in bounds.items():
        number = getattr(rules, name)
        if isinstance(number, bool) or not 0 <= number <= bound:
            raise InvalidField(f"review.{name}", f"must be an integer 0-{bound} (0 = off)")
    return rules


# PATCH /api/merchants/{id}: field -> validator returning the value to store. The validators raise
# InvalidField; a field not listed here cannot be patched.
def check_currencies(value: Any) -> list[str]:
    """A new accepted-currencies list (PATCH names the list itself: no default applies)."""
    if value is None:
        raise InvalidField("currencies", 'must be a non-empty list of ISO 4217 codes such as ["EUR"]')
    try:
        return currency.check_currencies(value, "")
    except currency.InvalidCurrencies as exc:
        raise InvalidField("currencies", str(exc)) from None


SETTABLE: dict[str, Callable[[Any], Any]] = {
    "attribution_priority": check_priority,
    "review": check_review,
    "currencies": check_currencies,
}
# The settable fields that are part of the versioned policy (the rest are plain record fields).
POLICY_FIELDS = ("attribution_priority", "review")


def checked_patch(body: Any) -> dict[str, Any]:
    """The validated changes of a PATCH body: every field settable and valid, at least one."""
    if not isinstance(body, dict) or not body:
        raise InvalidField("body", "must be an object with at least one field")
    unknown = sorted(set(body) - set(SETTABLE))
    if unknown:
        raise InvalidField(unknown[0], f"cannot be changed (settable: {', '.join(sorted(SETTABLE))})")
    return {name: SETTABLE[name](value) for name, value in body.items()}


def next_policies(policies: list[Policy], current: Policy, now_ms: int) -> list[Policy]:
    """The history after a change to `current` at `now_ms` (unchanged if `current` is what holds now).
    Times never go backwards, so version order and time order agree."""
    history = list(policies) or [DEFAULT_POLICY]
    last = history[-1]
    if (last.attribution_priority, last.review) == (current.attribution_priority, current.review):
        return history
    if len(history) >= MAX_POLICY_VERSIONS:
        raise InvalidField("policy", f"at most {MAX_POLICY_VERSIONS} policy changes per merchant")
    return [*history, msgspec.structs.replace(current, effective_ms=max(now_ms, last.effective_ms))]


def policy_at(policies: list[Policy] | tuple[Policy, ...], at_ms: int) -> Policy:
    """The version in effect at `at_ms`; before the first one, the first (there was no other)."""
    if not policies:
        return DEFAULT_POLICY
    chosen = policies[0]
    for candidate in policies:
        if candidate.effective_ms <= at_ms:
            chosen = candidate
    return chosen


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the attributor needs of a merchant's policy: every version."""

    policies: tuple[Policy, ...] = ()

    def at(self, at_ms: int) -> Policy:
        if len(self.policies) == 1:
            return self.policies[0]  # the common case: never changed
        return policy_at(self.policies, at_ms)

    @property
    def counts_ip_clicks(self) -> bool:
        """Whether any version has the IP rule on (only then the attributor reads the click's IP counts)."""
        return any(p.review.max_clicks_per_ip_hour for p in self.policies)
