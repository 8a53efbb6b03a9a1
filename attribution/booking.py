"""The pure part of booking a chunk of one merchant's orders (no I/O): each order's desired ledger from
its folded events, its click's facts, the merchant's terms and its review verdict (ledger.py), the rows
that take the stored ledger there (`ledger.difference`), and the run's summary of what it appended."""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass, field

from attribution import ledger, review, rules
from core.rows import CommissionRow

# The ledger entry's fields are commissions columns of the same names (core/rows.py CommissionRow).
ENTRY_FIELDS = ledger.Entry.__struct_fields__
# A stored row's fields in Entry's order, positional: a keyword dict per row was a tenth of a rerun's CPU.
entry_fields_of = operator.attrgetter(*ENTRY_FIELDS)


@dataclass
class Booking:
    """What a run holds while it books one merchant's orders: each order's folded events and stored
    net ledger (taken out as its chunk is booked), and the run's terms, time and id."""

    terms: ledger.Terms
    folds: dict[str, ledger.Folded]
    stored: dict[str, ledger.Net]
    now_ms: int
    run_id: str


@dataclass
class Summary:
    orders: int = 0
    rows: int = 0
    amount_minor: int = 0
    skipped_unknown_merchant: int = 0
    events: int = 0  # commission events emitted (events_out.py)
    staged_dead_lettered: int = 0  # staged events of an earlier run that did not decode (Outbox.staged)
    stopped: bool = False  # ended early on a stop request; the cursor did not move
    outcomes: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)  # ledger rows appended, by kind


def add(summary: Summary, part: Summary) -> None:
    """A lane's summary added to the run's (attribution/lanes.py)."""
    summary.orders += part.orders
    summary.rows += part.rows
    summary.amount_minor += part.amount_minor
    summary.events += part.events
    summary.outcomes.update(part.outcomes)
    summary.kinds.update(part.kinds)


def book_chunk(
    booking: Booking,
    order_ids: list[str],
    looked_up: tuple[dict[str, rules.ClickFacts], dict[str, review.Decision]],
    summary: Summary,
) -> list[CommissionRow]:
    """A chunk's rows to append, given its clicks' facts and review verdicts (`looked_up`); its orders'
    folds and stored ledgers are taken out of `booking`."""
    facts, verdicts = looked_up
    terms, now_ms, run_id = booking.terms, booking.now_ms, booking.run_id
    merchant_id = terms.merchant_id
    all_folds, all_stored = booking.folds, booking.stored
    rows: list[CommissionRow] = []
    outcomes, kinds = summary.outcomes, summary.kinds
    amount = 0
    # Bound once, not looked up per order: this loop's own lines were a tenth of its time (py-spy).
    explain, difference, append = ledger.explain_folded, ledger.difference, rows.append
    fold_of, stored_of, click_of, verdict_of = all_folds.pop, all_stored.pop, facts.get, verdicts.get
    for order_id in order_ids:
        state = fold_of(order_id, None) or ledger.fold([])
        order = state.created
        click = click_of(order.click_id) if order is not None else None
        wanted = explain(state, click, terms, now_ms, verdict_of(order_id))[1]
        outcomes[outcome(wanted, order)] += 1
        for entry in difference(wanted, stored_of(order_id, {})):
            append(row(merchant_id, order_id, entry, now_ms, run_id))
            kinds[entry.kind] += 1
            amount += entry.amount_minor
    summary.orders += len(order_ids)
    summary.amount_minor += amount
    return rows


def outcome(wanted: list[ledger.Entry], order: ledger.OrderEvent | None) -> str:
    """What became of an order, as the run's summary counts it: credited, parked (no `order.created`
    yet), or the reason it was not credited."""
    if order is None:
        return "parked"
    credited = False
    for entry in wanted:  # one pass, no generators: once per order booked
        kind = entry.kind
        if kind == "none" and entry.entry_id.startswith("none:"):
            return entry.reason
        if kind == "accrual":
            credited = True
    if not credited:
        # refused outright (currency_mismatch, amount_out_of_range): its one flag row says why
        return wanted[0].reason if wanted else "refused"
    return "credited"


def row(merchant_id: str, order_id: str, entry: ledger.Entry, now_ms: int, run_id: str) -> CommissionRow:
    # Positional (the commissions columns' order): keyword arguments built per row cost a tenth of a run.
    e = entry
    return CommissionRow(
        merchant_id,
        order_id,
        e.entry_id,
        e.kind,
        e.status,
        e.amount_minor,
        e.orders,
        e.currency,
        e.creator_id,
        e.click_id,
        e.sku,
        e.quantity,
        e.basis_minor,
        e.rate_bps,
        e.rate_rule,
        e.rate_version,
        e.reason,
        e.event_id,
        e.effective_ms // 1000,
        e.effective_ms,
        now_ms,
        run_id,
        e.attributed_by,
        e.code,
    )
