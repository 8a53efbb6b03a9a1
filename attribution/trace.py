"""Why an order was (not) credited: the attributor's own decision record for one order, rendered for
`GET /api/merchants/{id}/orders/{order_id}/trace` (JSON) and `clicktrail attribute --explain` (text).

Nothing here decides anything: the events are `ledger.in_fold_order`, the click facts and the decision
are what `Attributor.explain` computed with the functions a run books from (`ledger.explain`,
decision.py), and the ledger is the stored rows plus the rows the next run would append (`booked`
false), the dry run.
"""

from __future__ import annotations

from dataclasses import dataclass

from attribution import ledger, rules
from attribution.decision import Decision
from attribution.review import Decision as Verdict
from core.links import iso_ms

# The ledger row fields a trace shows, in this order.
LEDGER_FIELDS = (
    "entry_id",
    "kind",
    "status",
    "amount_minor",
    "currency",
    "creator_id",
    "attributed_by",
    "code",
    "sku",
    "quantity",
    "basis_minor",
    "rate_bps",
    "rate_rule",
    "rate_version",
    "reason",
    "event_id",
)


@dataclass(frozen=True, slots=True)
class Explained:
    trace: dict  # the contract's JSON
    credited_creator: str  # '' when the order is credited to nobody (who may read the trace)


def render(
    order_id: str,
    events: list[ledger.OrderEvent],
    click: rules.ClickFacts | None,
    terms: ledger.Terms,
    decision: Decision | None,
    verdict: Verdict | None,
    wanted: list[ledger.Entry],
    stored: list[ledger.Entry],
    to_append: list[ledger.Entry],
) -> dict:
    order = ledger.fold(events).created
    return {
        "order_id": order_id,
        "events": [_event(e) for e in ledger.in_fold_order(events)],
        "click": _click(click, terms, order),
        "codes": _codes(decision),
        "review": _review(decision, verdict),
        "items": [_item(e) for e in wanted if e.kind == "accrual"],
        "ledger": [_row(e, True) for e in stored] + [_row(e, False) for e in to_append],
        "outcome": outcome(order, decision, wanted),
    }


# What a click's entry says of the click itself, left out where its reader may not see it.
CLICK_DETAILS = ("ts", "code", "creator_id", "is_bot")
# What a code's entry says of its owner's terms.
CODE_TERMS = ("creator_id", "rate_bps", "active_from_ms", "active_to_ms")


def for_creator(trace: dict, creator_id: str) -> dict:
    """The trace as the creator it credits may read it: another creator's codes keep their code, status
    and whether they were credited, not their owner, rate or span (the merchant's terms for that creator,
    which a creator key never reads); another creator's click keeps its checks, not its details; the
    ledger keeps the order's rows of this creator and of nobody (another creator's rows, say the
    reversal of a credit that moved, are that creator's money)."""

    def others(owner: str | None) -> bool:
        return owner is not None and owner not in ("", creator_id)

    click = trace["click"]
    if others(click.get("creator_id")):
        click = click | dict.fromkeys(CLICK_DETAILS)
    return trace | {
        "click": click,
        "codes": [c | dict.fromkeys(CODE_TERMS) if others(c["creator_id"]) else c for c in trace["codes"]],
        "ledger": [row for row in trace["ledger"] if not others(row["creator_id"])],
    }


def outcome(order: ledger.OrderEvent | None, decision: Decision | None, wanted: list[ledger.Entry]) -> str:
    if order is None:
        return "parked"
    if decision is None:  # refused before any decision: its one flag row says why
        return next((e.reason for e in wanted), "refused")
    return decision.outcome


def _event(event: ledger.OrderEvent) -> dict:
    return {
        "webhook_id": event.webhook_id,
        "type": event.type,
        "occurred_at": iso_ms(event.occurred_ms),
        "received_at": iso_ms(event.received_ms) if event.received_ms else None,
        "currency": event.currency,
        "click_id": event.click_id,
        "discount_codes": list(event.discount_codes),
        "items": [
            {
                "sku": i.sku,
                "category": i.category,
                "unit_price_minor": i.unit_price_minor,
                "quantity": i.quantity,
            }
            for i in event.items
        ],
    }


def _click(click: rules.ClickFacts | None, terms: ledger.Terms, order: ledger.OrderEvent | None) -> dict:
    if click is None or not click.click_id:
        return dict.fromkeys(
            ("click_id", "mac_ok", "found", "ts", "code", "creator_id", "is_bot", "owner_ok", "in_window")
        ) | {"click_id": click.click_id if click else None, "found": False}
    found = click.found
    owner_ok = rules.is_merchants(click, terms.merchant_id) if found else None
    # A click on another merchant's link (or a host nobody owns) is refused for that alone: who made it,
    # through which link and when are that merchant's business, not this one's.
    shown = found and owner_ok
    in_window = None
    if shown and order is not None:
        in_window = rules.window_reason(click.ts_ms, order.occurred_ms, terms.window_days) is None
    details = (
        {"ts": iso_ms(click.ts_ms), "code": click.code or None, "creator_id": click.creator_id,
         "is_bot": click.is_bot or click.is_head}
        if shown
        else dict.fromkeys(CLICK_DETAILS)
    )  # fmt: skip
    return {
        "click_id": click.click_id,
        "mac_ok": click.well_formed and click.mac_valid,
        "found": found,
        **details,
        "owner_ok": owner_ok,
        "in_window": in_window,
    }


def _codes(decision: Decision | None) -> list[dict]:
    if decision is None:
        return []
    credit = decision.credit
    chosen = credit.code if credit is not None and credit.attributed_by == "code" else None
    return [
        check.as_dict()
        | {"credited": chosen is not None and check.span is not None and check.span.code == chosen}
        for check in decision.codes
    ]


def _review(decision: Decision | None, verdict: Verdict | None) -> list[dict]:
    checks = [c.as_dict() for c in decision.review] if decision is not None else []
    if verdict is not None:
        checks.append(
            {"rule": "decision", "decision": verdict.decision, "decided_at": iso_ms(verdict.decided_ms)}
        )
    return checks


def _item(entry: ledger.Entry) -> dict:
    return {
        "sku": entry.sku,
        "basis_minor": entry.basis_minor,
        "rate_bps": entry.rate_bps,
        "rate_rule": entry.rate_rule,
        "rate_version": entry.rate_version,
        "amount_minor": entry.amount_minor,
    }


def _row(entry: ledger.Entry, booked: bool) -> dict:
    row = {name: getattr(entry, name) for name in LEDGER_FIELDS}
    row["effective_at"] = iso_ms(entry.effective_ms) if entry.effective_ms else None
    row["booked"] = booked
    return row


def text(trace: dict) -> str:
    """The trace for a person: one section per step, the same facts as the JSON."""
    lines = [f"order {trace['order_id']}: {trace['outcome']}", "", "events (fold order):"]
    for e in trace["events"]:
        items = ", ".join(f"{i['sku']} x{i['quantity']} @ {i['unit_price_minor']}" for i in e["items"])
        codes = f" codes {','.join(e['discount_codes'])}" if e["discount_codes"] else ""
        lines.append(f"  {e['occurred_at']} {e['type']} [{e['webhook_id']}] {e['currency']} {items}{codes}")
    click = trace["click"]
    lines += ["", "click:"]
    lines += [f"  {k}: {'-' if v is None else v}" for k, v in click.items()]
    lines += ["", "codes:"]
    for c in trace["codes"]:
        rate = c["rate_bps"] if c["rate_bps"] is not None else "usual"
        owner = f" -> {c['creator_id']} (rate {rate})" if c["creator_id"] else ""
        lines.append(f"  {c['code']}: {c['status']}{owner}" + (" [credited]" if c["credited"] else ""))
    if not trace["codes"]:
        lines.append("  (none)")
    lines += ["", "review:"] + [f"  {_review_line(r)}" for r in trace["review"]]
    if not trace["review"]:
        lines.append("  (no active rule)")
    lines += ["", "items:"] + [
        f"  {i['sku']}: basis {i['basis_minor']} x {i['rate_bps']} bps ({i['rate_rule']}, version "
        f"{i['rate_version']}) = {i['amount_minor']}"
        for i in trace["items"]
    ]
    lines += ["", "ledger (* = not booked yet: what the next run appends):"]
    for r in trace["ledger"]:
        mark = " " if r["booked"] else "*"
        lines.append(
            f" {mark}{r['entry_id']:<28} {r['kind']:<9} {r['status']:<9} {r['amount_minor']:>12} "
            f"{r['currency']} {r['creator_id']} {r['attributed_by']} {r['reason']}".rstrip()
        )
    return "\n".join(lines)


def _review_line(check: dict) -> str:
    if check["rule"] == "decision":
        return f"decision: {check['decision']} at {check['decided_at']}"
    state = "TRIPPED" if check["tripped"] else "ok"
    observed = "-" if check["observed"] is None else check["observed"]
    return f"{check['rule']}: limit {check['limit']}, observed {observed}: {state}"
