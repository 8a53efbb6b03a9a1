"""The commission ledger of one order, computed as a pure function of its events (and the clock).

How an append-only ledger stays right (the design the attributor relies on):

- Each run computes the *desired* ledger of an order from all its events, deterministically: every entry
  has an `entry_id` built only from the events' content (`acc:<line>`, `rev:<webhook-id>:<line>`,
  `apr:<line>:pending`...). It then reads what is stored (net amount per entry id, status and credit:
  creator, currency and click) and appends only the difference. A rerun, or the same events seen twice or
  in another order, finds nothing to append. When the credit moves (an earlier-dated create arriving late
  with another click id or currency), the old credit's rows are reversed (kind `reversal`, reason
  `credit_moved`) and the new ones booked in the same run.
- `sum(amount_minor)` is the balance. Status is a column, not an update: when an order's `lock_days` have
  passed, the approval is booked as a *transfer*: an `approval` row of `-P` with status `pending` and one of
  `+P` with status `approved`, where P is the line's net pending amount. The total is unchanged and
  `sum(amount_minor) GROUP BY status` gives pending and approved balances. A reversal whose event happened
  after the lock is booked directly as `approved`.
- An order that earns nothing gets one zero-amount `none` row carrying the reason; rows are never deleted,
  so the order's current explanation is its latest-booked rows (`argMax(reason, booked_ms)`).
- Event precedence is by (occurred_ms, webhook_id), never arrival: a refund that arrives before its order
  is parked (nothing booked) until the order arrives; an order id created again with different items is
  flagged (`order_conflict`) and never summed. Of two events of an order under one webhook-id (reused past
  the webhook's 7-day idempotency window) the one dated first counts and the other is flagged
  (`webhook_id_reused`); order_events keeps one row per (order, webhook-id), so a merge may later leave
  only the one received last. Refund quantities are capped at what remains of a line; a
  refund reverses a line once, however many of its positions name the line's SKU. A partial refund takes
  back its items' own commission, cut (reason `refund_capped`) where that would leave the line less than
  its remaining quantity earns, so partial refunds never take back more than the accrual; a fully
  refunded line nets to zero.
- Commission is booked in the order's own currency (the webhook refuses a currency the merchant does not
  accept: attribution/currency.py). A refund or cancel whose currency differs from its order's books one
  zero `flag` row (`currency_mismatch`) and nothing else: it is not applied. An order whose amounts pass the
  bounds of money.py (refused at the webhook since; one could still be in the stream from before) books a
  zero `flag` row (`amount_out_of_range`) and nothing else, never a wrapped amount.
- Who is credited, through a click or a discount code, and whether the accrual is held for review, is
  decision.py's one decision. Entry ids say which: rows of a code credit start `code:`, rows held for
  review `review:` (`code:review:acc:0`), so should a decision change (a click ingested after its order
  was credited by code, more clicks of a held hour arriving late), `difference` reverses the old rows
  and books the new ones instead of leaving them under the wrong creator or status. A held accrual is
  booked `review`; a review decision folds in at its time: approve transfers each line's amount in review
  to pending (kind `review`), reject reverses it (reason `rejected`, `orders` -1: no longer credited).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

import msgspec
from msgspec.structs import replace

from attribution import codes, money, review, rules
from attribution.decision import Decision, decide
from attribution.policy import Snapshot

CREATED, REFUNDED, CANCELLED = "order.created", "order.refunded", "order.cancelled"
# A zero row that records something wrong with an event; it never carries money.
KIND_FLAG = "flag"
REASON_CURRENCY_MISMATCH = "currency_mismatch"
# A partial refund's reversal cut below its items' own commission, so that the line keeps what its remaining
# quantity earns (`_reversal`).
REASON_REFUND_CAPPED = "refund_capped"


class Item(msgspec.Struct, frozen=True, gc=False):
    sku: str
    unit_price_minor: int
    quantity: int
    category: str = ""


class OrderEvent(msgspec.Struct, frozen=True, gc=False):
    merchant_id: str
    webhook_id: str
    type: str
    order_id: str
    click_id: str
    currency: str
    occurred_ms: int
    items: tuple[Item, ...] = ()
    discount_codes: tuple[str, ...] = ()
    received_ms: int = 0  # when our webhook accepted it (0: not known, e.g. a test's event)


@dataclass(frozen=True, slots=True)
class Terms:
    """The merchant terms the ledger needs."""

    merchant_id: str
    window_days: int
    lock_days: int
    versions: list[rules.RateVersion]
    currency: str  # the merchant's main currency (commission is booked in each order's own currency)
    codes: dict[str, list[codes.Span]] = field(default_factory=dict)  # normalised code -> its spans
    policy: Snapshot = field(default_factory=Snapshot)  # every version of the priority and review rules
    registered_ms: int = 0  # when the merchant registered (0: not known): Folded.judged_ms
    # `versions` by time and their start times, for `version_at`: sorted once per Terms (one run of one
    # merchant) rather than once per credited order. Taken at construction, like the rest of the terms.
    _by_time: tuple[rules.RateVersion, ...] = field(init=False, repr=False, compare=False)
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_time = tuple(sorted(self.versions, key=lambda v: (v.effective_ms, v.version)))
        object.__setattr__(self, "_by_time", by_time)
        object.__setattr__(self, "_starts", tuple(v.effective_ms for v in by_time))

    def version_at(self, at_ms: int) -> rules.RateVersion:
        """`rules.version_at(self.versions, at_ms)`: the latest version started at or before `at_ms` (in
        (effective_ms, version) order), else the first stored."""
        found = bisect_right(self._starts, at_ms)
        if not found:
            return rules.version_at(self.versions, at_ms)  # none started yet, or no version at all
        return self._by_time[found - 1]


# A Struct, not a frozen dataclass: a run builds and copies several per order, and a dataclass's frozen
# __init__ alone took a tenth of an attributor run's CPU (py-spy, benchmarks/attribution.py).
class Entry(msgspec.Struct, frozen=True, gc=False):
    entry_id: str
    kind: str  # accrual, reversal, approval, none, flag
    status: str  # pending, approved
    amount_minor: int
    orders: int = 0  # +1 on the order's first accrual line: sum(orders) counts credited orders
    creator_id: str = ""
    click_id: str = ""
    currency: str = ""
    sku: str = ""
    quantity: int = 0
    basis_minor: int = 0
    rate_bps: int = 0
    rate_rule: str = ""
    rate_version: int = 0
    reason: str = ""
    event_id: str = ""
    effective_ms: int = 0
    attributed_by: str = ""  # click, code, or '' (not credited)
    code: str = ""


@dataclass
class Folded:
    created: OrderEvent | None
    conflicts: list[OrderEvent]
    changes: list[OrderEvent]  # refunds and cancels in (occurred_ms, webhook_id) order
    received_ms: int = 0  # the first receipt of any event of the order (0: none known)
    # Events left out because another event of the order came under the same webhook-id (`in_fold_order`)
    # and says something else: one flag row each names them.
    reused: list[OrderEvent] = field(default_factory=list)

    def judged_ms(self, registered_ms: int) -> int:
        """When the order was first received, which decides whose host its click was on (rules.as_of): its
        first known receipt; for an `order.created` stored by a release that kept no receipt, its time,
        never before its merchant registered (`registered_ms`: it cannot have been received before)."""
        assert self.created is not None
        if self.created.received_ms:
            return self.received_ms
        return max(self.created.occurred_ms, registered_ms)

    @property
    def terms_ms(self) -> int:
        """When the merchant's versioned terms (codes, rates, policy) are read for the order: its time,
        but never after we first heard of it. Every version takes effect when it is made, so an order
        dated ahead of its arrival would see versions made after it was booked, and a rerun would move
        its credit. The first receipt of any of its events, not that of the event the fold keeps: a
        second `order.created` received later (another webhook-id) must not move the time either."""
        assert self.created is not None
        if self.received_ms and self.received_ms < self.created.occurred_ms:
            return self.received_ms
        return self.created.occurred_ms


_event_bytes = msgspec.msgpack.Encoder()


def _precedence(event: OrderEvent) -> tuple[int, str]:
    return (event.occurred_ms, event.webhook_id)


def in_fold_order(events: list[OrderEvent]) -> list[OrderEvent]:
    """Each webhook-id once, by precedence: the order `fold` reads them in (and the trace shows)."""
    if len(events) < 2:
        return list(events)  # most orders: one event, nothing to order (the attributor folds 100k a run)
    # Past the acceptor's idempotency window a sender could reuse a webhook-id with another body: keep
    # one by a rule that does not depend on the order ClickHouse returns rows in.
    unique: dict[str, OrderEvent] = {}
    for event in sorted(events, key=lambda e: (e.webhook_id, e.occurred_ms, _event_bytes.encode(e))):
        unique.setdefault(event.webhook_id, event)
    return sorted(unique.values(), key=_precedence)


def fold(events: list[OrderEvent]) -> Folded:
    ordered = in_fold_order(events)
    reused = _reused(events, ordered) if len(ordered) < len(events) else []
    created_events = [e for e in ordered if e.type == CREATED]
    created = created_events[0] if created_events else None
    conflicts = [
        e
        for e in created_events[1:]
        if (e.items, e.click_id, e.currency) != (created.items, created.click_id, created.currency)
    ]
    changes = [e for e in ordered if e.type in (REFUNDED, CANCELLED)]
    received_ms = min((e.received_ms for e in events if e.received_ms), default=0)
    return Folded(created, conflicts, changes, received_ms, reused)


def _reused(events: list[OrderEvent], kept: list[OrderEvent]) -> list[OrderEvent]:
    """One event of each webhook-id that `in_fold_order` left out and that differs from the one it kept
    (its receipt time aside: a retry sent again after the acceptor's 7 days is the same event)."""
    by_id = {e.webhook_id: e for e in kept}
    out: dict[str, OrderEvent] = {}
    for event in events:
        chosen = by_id[event.webhook_id]
        if event is not chosen and replace(event, received_ms=0) != replace(chosen, received_ms=0):
            out.setdefault(event.webhook_id, event)
    return list(out.values())


def desired(
    events: list[OrderEvent],
    click: rules.ClickFacts | None,
    terms: Terms,
    now_ms: int,
    verdict: review.Decision | None = None,
) -> list[Entry]:
    """The full ledger this order should have at `now_ms`. `click` is None only while parked; `verdict`
    is the merchant's review decision on the order, if any."""
    return explain(events, click, terms, now_ms, verdict)[1]


def explain(
    events: list[OrderEvent],
    click: rules.ClickFacts | None,
    terms: Terms,
    now_ms: int,
    verdict: review.Decision | None = None,
) -> tuple[Decision | None, list[Entry]]:
    """`desired` with the decision it booked from (None: parked or refused before any decision)."""
    return explain_folded(fold(events), click, terms, now_ms, verdict)


def explain_folded(
    state: Folded,
    click: rules.ClickFacts | None,
    terms: Terms,
    now_ms: int,
    verdict: review.Decision | None = None,
) -> tuple[Decision | None, list[Entry]]:
    """`explain` of events already folded (the attributor folds each order once, to order its chunks)."""
    order = state.created
    if order is None or click is None:
        return None, []  # parked: a refund or cancel before its order
    click = rules.as_of(click, state.judged_ms(terms.registered_ms), terms.merchant_id)
    refusal = _refusal(order, terms)
    if refusal is not None:
        return None, [_order_row(f"flag:{refusal}", KIND_FLAG, refusal, order, click)]
    # Guarded: most orders were created once, and a comprehension is a call even over nothing.
    flags = _event_flags(state.conflicts, "conflict", "order_conflict") if state.conflicts else []
    if state.reused:
        flags += _event_flags(state.reused, "reused", "webhook_id_reused")
    terms_ms = state.terms_ms
    policy = terms.policy.at(terms_ms)
    decision = decide(
        click,
        terms.merchant_id,
        terms.window_days,
        order.occurred_ms,
        order.discount_codes,
        terms.codes,
        policy,
        terms_ms,
    )
    if decision.credit is None:
        reason = decision.outcome
        return decision, [_order_row(f"none:{reason}", "none", reason, order, click), *flags]
    return decision, _credited(state, decision, terms, now_ms, verdict) + flags


def _event_flags(events: list[OrderEvent], name: str, reason: str) -> list[Entry]:
    """One zero flag per event left out of the booking, naming it: another `order.created` of the order
    that differs from the one booked (`conflict`, `order_conflict`), or another event under a webhook-id
    the order already used, past the acceptor's idempotency window (`reused`, `webhook_id_reused`)."""
    return [
        Entry(f"flag:{name}:{e.webhook_id}", KIND_FLAG, "pending", 0, reason=reason, event_id=e.webhook_id)
        for e in events
    ]


def _order_row(entry_id: str, kind: str, reason: str, order: OrderEvent, click: rules.ClickFacts) -> Entry:
    """The one zero row of an order that earns nothing, carrying why."""
    return Entry(
        entry_id,
        kind,
        "pending",
        0,
        creator_id=click.creator_id,
        click_id=order.click_id,
        currency=order.currency,
        reason=reason,
        event_id=order.webhook_id,
        effective_ms=order.occurred_ms,
    )


def _refusal(order: OrderEvent, terms: Terms) -> str | None:
    """Why an order cannot be booked at all, whatever its click."""
    if money.items_problem(order.items) is not None:
        return money.REASON_AMOUNT_OUT_OF_RANGE
    return None


def _credited(
    state: Folded, decision: Decision, terms: Terms, now_ms: int, verdict: review.Decision | None
) -> list[Entry]:
    """An order credited to the decision's creator: its accruals, then each refund or cancel in turn (the
    review decision folded in at its time), then the approval transfers once the lock has passed (and,
    for a held order, it was approved)."""
    order = state.created
    credit = decision.credit
    assert order is not None and credit is not None
    lock_at = rules.lock_ms(order.occurred_ms, terms.lock_days)
    held = bool(credit.review_reason)
    prefix = ("code:" if credit.attributed_by == "code" else "") + ("review:" if held else "")
    version = terms.version_at(credit.rate_at_ms)
    accruals = _accruals(order, credit, version, prefix, "review" if held else "pending")
    pending_verdict = verdict if held else None  # a decision on an order not held changes nothing
    if not state.changes and pending_verdict is None:
        # Most orders: no refund, cancel or review decision to apply, so no line is followed (what the
        # loop below would do with none, without building its bookkeeping).
        if not held and now_ms >= lock_at:
            return accruals + _approvals(accruals, [e.amount_minor for e in accruals], lock_at, prefix)
        return accruals
    common = {
        "creator_id": credit.creator_id,
        "click_id": order.click_id,
        "currency": order.currency,
        "attributed_by": credit.attributed_by,
        "code": credit.code,
    }
    lines = _Lines(
        remaining_qty=[item.quantity for item in order.items],
        remaining_minor=[entry.amount_minor for entry in accruals],
        pending_minor=[entry.amount_minor for entry in accruals],
    )
    entries = list(accruals)
    for change in state.changes:
        if pending_verdict is not None and change.occurred_ms >= pending_verdict.decided_ms:
            entries += _verdict(pending_verdict, accruals, lines, prefix)
            if pending_verdict.decision == review.REJECT:
                return entries  # nothing is left to refund
            pending_verdict, held = None, False
        status = "review" if held else ("approved" if change.occurred_ms >= lock_at else "pending")
        entries += _change(change, order, accruals, lines, status, common, prefix)
    if pending_verdict is not None:
        entries += _verdict(pending_verdict, accruals, lines, prefix)
        if pending_verdict.decision == review.REJECT:
            return entries
        held = False
    approve_at = max(lock_at, verdict.decided_ms) if credit.review_reason and verdict else lock_at
    if not held and now_ms >= approve_at:
        entries += _approvals(accruals, lines.pending_minor, approve_at, prefix)
    return entries


def _verdict(verdict: review.Decision, accruals: list[Entry], lines: _Lines, prefix: str) -> list[Entry]:
    """Approve: each line's amount in review moves to pending. Reject: it is reversed."""
    entries = []
    for index, amount in enumerate(lines.pending_minor):
        base = replace(
            accruals[index], orders=0, event_id="", effective_ms=verdict.decided_ms, quantity=0, basis_minor=0
        )
        if verdict.decision == review.APPROVE:
            base = replace(base, kind="review", reason="approved")
            entries.append(
                replace(base, entry_id=f"{prefix}rvw:{index}:review", status="review", amount_minor=-amount)
            )
            entries.append(
                replace(base, entry_id=f"{prefix}rvw:{index}:pending", status="pending", amount_minor=amount)
            )
        else:
            entries.append(
                replace(
                    base,
                    entry_id=f"{prefix}rej:{index}",
                    kind="reversal",
                    status="review",
                    amount_minor=-amount,
                    orders=-int(index == 0),
                    reason=review.REASON_REJECTED,
                )
            )
            lines.remaining_minor[index] -= amount
            lines.remaining_qty[index] = 0
    return entries


@dataclass
class _Lines:
    """What is left of each order line as refunds and cancels are applied in order."""

    remaining_qty: list[int]
    remaining_minor: list[int]
    pending_minor: list[int]  # the part still pending (or in review), which the approval transfers


def _accruals(order: OrderEvent, credit, version: rules.RateVersion, prefix: str, status: str) -> list[Entry]:
    """One accrual per line, at the rate the creator earned under the version in effect at the click (or,
    for a code, at the order; a code's own rate overrides the tables)."""
    entries = []
    creator_id = credit.creator_id
    # A code's own rate is the same for every line.
    code_rate = (
        None if credit.rate_bps is None else rules.AppliedRate(credit.rate_bps, "code", version.version)
    )
    for index, item in enumerate(order.items):
        applied = (
            rules.rate_for(version, creator_id, item.sku, item.category) if code_rate is None else code_rate
        )
        # Positional, in Entry's field order: keyword arguments per line cost a measurable share of a run.
        entries.append(
            Entry(
                f"{prefix}acc:{index}",
                "accrual",
                status,
                rules.commission_minor(item.unit_price_minor, item.quantity, applied.rate_bps),
                int(index == 0),
                creator_id,
                order.click_id,
                order.currency,
                item.sku,
                item.quantity,
                item.unit_price_minor * item.quantity,
                applied.rate_bps,
                applied.rule,
                applied.version,
                credit.review_reason,
                order.webhook_id,
                order.occurred_ms,
                credit.attributed_by,
                credit.code,
            )
        )
    return entries


def _change(
    change: OrderEvent,
    order: OrderEvent,
    accruals: list[Entry],
    lines: _Lines,
    status: str,
    common: dict,
    prefix: str = "",
) -> list[Entry]:
    """The reversals (or flags) one refund or cancel books at `status`, updating what is left of each
    line."""
    if change.currency != order.currency:
        refunded = [(0, 0, REASON_CURRENCY_MISMATCH)]  # not applied: amounts in another currency
    else:
        refunded = _reversed_lines(change, order, lines.remaining_qty)
    entries = []
    for index, quantity, flag in refunded:
        if flag:
            entries.append(
                Entry(
                    f"{prefix}flag:{flag}:{change.webhook_id}:{index}",
                    KIND_FLAG,
                    status,
                    0,
                    reason=flag,
                    event_id=change.webhook_id,
                    effective_ms=change.occurred_ms,
                    **common,
                )
            )
            continue
        entries.append(
            _reversal(change, order.items[index], accruals[index], index, quantity, lines, status, prefix)
        )
    return entries


def _reversal(
    change: OrderEvent,
    item: Item,
    accrual: Entry,
    index: int,
    quantity: int,
    lines: _Lines,
    status: str,
    prefix: str = "",
) -> Entry:
    # A refund takes back its items' own commission (rounded half-even, as the accrual was), but never so
    # much that the line keeps less than its remaining quantity earns: rounded refund by refund, six
    # refunds of one unit of a 7-unit line earning 10 (10.5) took 2 each, 12 with a unit still sold. A
    # reversal cut so says why. The whole remainder nets the line to exactly zero.
    still = lines.remaining_qty[index] - quantity
    own = rules.commission_minor(item.unit_price_minor, quantity, accrual.rate_bps)
    if still:
        left = rules.commission_minor(item.unit_price_minor, still, accrual.rate_bps)
        amount = max(0, min(own, lines.remaining_minor[index] - left))
    else:
        amount = lines.remaining_minor[index]  # the whole remainder: the line nets to exactly zero
    lines.remaining_qty[index] -= quantity
    lines.remaining_minor[index] -= amount
    if status in ("pending", "review"):
        lines.pending_minor[index] -= amount
    return replace(
        accrual,
        entry_id=f"{prefix}rev:{change.webhook_id}:{index}",
        kind="reversal",
        status=status,
        amount_minor=-amount,
        orders=0,
        reason=REASON_REFUND_CAPPED if still and amount < own else "",
        quantity=quantity,
        basis_minor=item.unit_price_minor * quantity,
        event_id=change.webhook_id,
        effective_ms=change.occurred_ms,
    )


def _approvals(
    accruals: list[Entry], pending_minor: list[int], lock_at: int, prefix: str = ""
) -> list[Entry]:
    """Once the lock has passed: each line's net pending amount moves from pending to approved."""
    entries = []
    for index, amount in enumerate(pending_minor):
        base = replace(
            accruals[index], kind="approval", orders=0, event_id="", effective_ms=lock_at, reason=""
        )
        entries.append(
            replace(base, entry_id=f"{prefix}apr:{index}:pending", status="pending", amount_minor=-amount)
        )
        entries.append(
            replace(base, entry_id=f"{prefix}apr:{index}:approved", status="approved", amount_minor=amount)
        )
    return entries


def _reversed_lines(
    change: OrderEvent, order: OrderEvent, remaining_qty: list[int]
) -> list[tuple[int, int, str | None]]:
    """(line index, quantity to reverse, flag) for one refund or cancel, against what remains: one per
    line, however many of the refund's positions name its SKU (a line's reversal is one entry id,
    `rev:<webhook>:<line>`, which must not come twice), then a flag per position refunding too much."""
    if change.type == CANCELLED:
        return [(index, quantity, None) for index, quantity in enumerate(remaining_qty) if quantity]
    left = list(remaining_qty)
    flags: list[tuple[int, int, str | None]] = []
    for position, item in enumerate(change.items):
        wanted = item.quantity
        for index, line in enumerate(order.items):
            if wanted and line.sku == item.sku and left[index]:
                take = min(wanted, left[index])
                left[index] -= take
                wanted -= take
        if wanted:
            flags.append((position, 0, "refund_exceeds_order"))
    had_left = enumerate(zip(remaining_qty, left, strict=True))
    return [(index, had - now, None) for index, (had, now) in had_left if had != now] + flags


# What `difference` compares: the net of an entry id per status and per credit (creator, currency and the
# credited click). A row's status is not always fixed by its id: a refund of a held order is booked `review`
# until an approval decided before it is known, then `pending`; one near the lock is `pending` or `approved`
# by which created event is earliest. Nor is its credit: an order created twice with another click id (so
# maybe another creator) or currency is credited by the earlier-dated create, which may arrive last; the
# same entry ids then belong to another credit, often with the same amounts. Compared by id (and status)
# alone, the stored rows kept their first status or credit (the amounts agree) and nothing moved.
Key = tuple[str, str, str, str, str]
Net = dict[Key, "Entry"]
# Why a stored row is reversed because the order's credit moved (its entry id is booked for another one).
REASON_CREDIT_MOVED = "credit_moved"


def key(entry: Entry) -> Key:
    return (entry.entry_id, entry.status, entry.creator_id, entry.currency, entry.click_id)


def difference(wanted: list[Entry], stored: Net) -> list[Entry]:
    """Rows to append so that the stored net per `key` equals `wanted`. `stored` holds, per key, one stored
    row with `amount_minor` and `orders` replaced by their sums. An entry whose status or credit changed
    gets two rows, the old key negated and the new one booked. A row reversed because the order is now
    credited to another (creator, currency, click) is a `reversal` that says so (`credit_moved`): the old
    creator is told of a reversal (events_out.py), not of a negative accrual or approval.

    Payouts identify a row by (order, entry id, run, creator, currency): of the two rows one run books for
    one entry id, at most one is `approved` when only the status changed, and they differ in creator or
    currency when those changed. When only the click did (same creator and currency) both may be
    `approved`: rows of one run, creator and currency are booked at one time and paid by one payout, so a
    batch links and releases them together (attribution/payouts.py)."""
    out: list[Entry] = []
    seen = set()
    have_of = stored.get
    for entry in wanted:
        # `key(entry)` written out: this runs for every row of every order a run books
        entry_key = (entry.entry_id, entry.status, entry.creator_id, entry.currency, entry.click_id)
        if entry_key in seen:
            # One key twice: each copy would be compared with the whole stored net and every rerun would
            # append again, growing without end. The rules give each key once (`_reversed_lines`); should one
            # ever come twice, its sum is what is wanted.
            return difference(list(net(wanted).values()), stored)
        seen.add(entry_key)
        have = have_of(entry_key)
        if have is None:
            out.append(entry)
            continue
        delta_minor = entry.amount_minor - have.amount_minor
        delta_orders = entry.orders - have.orders
        if delta_minor or delta_orders:
            out.append(replace(entry, amount_minor=delta_minor, orders=delta_orders))
    credits = None  # the wanted credits, needed only once a stored row is gone (seldom)
    for stored_key, have in stored.items():
        if stored_key not in seen and (have.amount_minor or have.orders):
            if credits is None:
                credits = {(e.creator_id, e.currency, e.click_id) for e in wanted if e.kind == "accrual"}
            gone = replace(have, amount_minor=-have.amount_minor, orders=-have.orders)
            if credits and (have.creator_id, have.currency, have.click_id) not in credits:
                gone = replace(gone, kind="reversal", reason=REASON_CREDIT_MOVED)
            out.append(gone)
    return out


def net(entries: list[Entry]) -> Net:
    """Fold rows into one per `key` (entry id, status, credit) with summed amount and orders (what
    `difference` compares)."""
    sums: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
    first: dict[Key, Entry] = {}
    for entry in entries:
        first.setdefault(key(entry), entry)
        sums[key(entry)][0] += entry.amount_minor
        sums[key(entry)][1] += entry.orders
    return {k: replace(first[k], amount_minor=s[0], orders=s[1]) for k, s in sums.items()}
