"""A ledger row (`commissions`) told in words: what kind of booking it is, how its amount was reached
(basis × rate, the rule and version that gave the rate) and, for an order that earns nothing, why. Pure:
`GET /api/creators/{id}/orders` and the dashboard's earnings page show the same sentences."""

from __future__ import annotations

from attribution.report import major_units
from core.rows import CommissionRow

# Why an order earned nothing, or what a zero row flags (attribution/rules.py, decision.py, ledger.py).
REASONS = {
    "no_click_id": "the order carried no click id",
    "invalid_click_id": "the order's click id is not one of ours (its signature does not match)",
    "no_click": "no recorded click has the order's click id",
    "preview": "the click was a link preview, not a person",
    "bot": "the click came from a bot",
    "foreign_merchant": "the click's link leads to another merchant",
    "order_before_click": "the order was placed before the click",
    "expired": "the order came after the attribution window closed",
    "no_active_code": "the order's discount code was not assigned to anyone at the time",
    "order_conflict": "the order id was sent again with different items, click id or currency, so it is not "
    "counted",
    "webhook_id_reused": "two events of this order came under one webhook-id (reused after the 7 days in "
    "which the webhook refuses that): only the one dated first counts; send each event under its own id",
    "currency_mismatch": "a refund or cancel came in another currency than its order and was not applied",
    "amount_out_of_range": "the order's amounts are beyond the supported bounds",
    "rejected": "the merchant rejected the order in review",
    "approved": "the merchant approved the order in review",
    "refund_capped": "less than the refunded items' own commission: the line keeps what its remaining "
    "quantity earns (the roundings of earlier partial refunds took the rest)",
    "credit_moved": "the order is credited elsewhere now (another creator, click or currency): an "
    "order.created dated earlier arrived later",
}
KINDS = {
    "accrual": "Commission",
    "reversal": "Reversal",
    "approval": "Approval transfer",
    "review": "Review",
    "none": "No commission",
    "flag": "Flag",
}
# Commission rates are in basis points: 1 bp = 0.01 %.
BPS_PER_PERCENT = 100


def reason_text(reason: str) -> str:
    """A reason in words; a reason this table does not know yet is shown as it is stored."""
    return REASONS.get(reason, reason.replace("_", " "))


def percent(rate_bps: int) -> str:
    whole, rest = divmod(rate_bps, BPS_PER_PERCENT)
    return f"{whole}.{rest:02d}".rstrip("0").rstrip(".") + " %"


def sentence(row: CommissionRow) -> str:
    kind = KINDS.get(row.kind, row.kind.capitalize() or "Entry")
    if row.kind in ("none", "flag"):
        return f"{kind}: {reason_text(row.reason)}." if row.reason else f"{kind}."
    parts = [kind]
    if row.sku:
        parts.append(f"for {row.quantity} × {row.sku}")
    if row.rate_bps or row.basis_minor:
        rule = f" ({row.rate_rule} rate, version {row.rate_version})" if row.rate_rule else ""
        parts.append(
            f"at {percent(row.rate_bps)} of {major_units(row.basis_minor, row.currency)} {row.currency}{rule}"
        )
    if row.attributed_by == "code" and row.code:
        parts.append(f"credited through discount code {row.code}")
    text = " ".join(parts)
    return f"{text}: {reason_text(row.reason)}." if row.reason else f"{text}."
