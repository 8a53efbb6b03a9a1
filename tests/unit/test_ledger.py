"""The desired ledger of one order and the append-only difference: table cases plus a property test over
permutations and duplications of an order's events."""

from __future__ import annotations

from collections import Counter
from unittest import mock

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from attribution import codes, ledger, review, rules
from attribution.ledger import CANCELLED, CREATED, REFUNDED, Item, OrderEvent
from attribution.policy import Policy, ReviewRules, Snapshot

DAY = rules.MS_PER_DAY
T0 = 100 * DAY
TERMS = ledger.Terms(
    "m1",
    window_days=30,
    lock_days=30,
    versions=[rules.RateVersion(1, 0, 800, {"shoes": 1000})],
    currency="EUR",
)
CLICK = rules.ClickFacts(
    "c" * 30, True, True, found=True, ts_ms=T0 - DAY, creator_id="alice", merchant_id="m1"
)
ITEMS = (Item("SKU-1", 5990, 2, "shoes"), Item("SKU-2", 1999, 3, "hats"))


def event(webhook_id: str, kind: str, at_ms: int, items=ITEMS) -> OrderEvent:
    return OrderEvent("m1", webhook_id, kind, "A-1", "c" * 30, "EUR", at_ms, tuple(items))


def totals(entries: list[ledger.Entry]) -> Counter:
    out: Counter = Counter()
    for e in entries:
        out[e.status] += e.amount_minor
        out[e.kind] += e.amount_minor
        out["orders"] += e.orders
    return out


def test_accrual_per_item_with_explanation() -> None:
    entries = ledger.desired([event("w1", CREATED, T0)], CLICK, TERMS, now_ms=T0)
    by_id = {e.entry_id: e for e in entries}
    # 5990 × 2 × 10 % = 1198 (category rule); 1999 × 3 × 8 % = 479.76 → 480 (default)
    assert by_id["acc:0"].amount_minor == 1198 and by_id["acc:0"].rate_rule == "category"
    assert by_id["acc:1"].amount_minor == 480 and by_id["acc:1"].rate_rule == "default"
    assert by_id["acc:1"].basis_minor == 5997 and by_id["acc:1"].rate_version == 1
    assert totals(entries)["orders"] == 1 and {e.status for e in entries} == {"pending"}


def test_partial_refunds_then_the_rest_net_to_zero() -> None:
    events = [
        event("w1", CREATED, T0),
        event("w2", REFUNDED, T0 + 1, [Item("SKU-2", 1999, 1)]),  # 159.92 → 160
        event("w3", REFUNDED, T0 + 2, [Item("SKU-2", 1999, 2)]),  # the remainder: 480 - 160
    ]
    entries = {e.entry_id: e for e in ledger.desired(events, CLICK, TERMS, now_ms=T0 + 3)}
    assert entries["rev:w2:1"].amount_minor == -160
    assert entries["rev:w3:1"].amount_minor == -320
    assert totals(list(entries.values()))["pending"] == 1198


def test_cancel_voids_what_remains_and_later_refunds_add_nothing() -> None:
    events = [
        event("w1", CREATED, T0),
        event("w2", REFUNDED, T0 + 1, [Item("SKU-1", 5990, 1)]),
        event("w3", CANCELLED, T0 + 2, ()),
        event("w4", REFUNDED, T0 + 3, [Item("SKU-2", 1999, 1)]),
    ]
    entries = ledger.desired(events, CLICK, TERMS, now_ms=T0 + 4)
    assert totals(entries)["pending"] == 0
    assert any(e.reason == "refund_exceeds_order" and e.event_id == "w4" for e in entries)


def test_refund_before_order_is_parked() -> None:
    refund = event("w2", REFUNDED, T0 + 1, [Item("SKU-1", 5990, 1)])
    assert ledger.desired([refund], None, TERMS, T0) == []
    # parked because its order has not arrived, even though the click is known and eligible
    assert ledger.desired([refund], CLICK, TERMS, T0) == []


def test_a_reused_webhook_id_counts_once_whatever_the_row_order() -> None:
    """Past the idempotency window a sender may reuse a webhook-id with another body: one of the two
    counts, and which one does not depend on the order the rows come back in."""
    first = event("w1", CREATED, T0)
    reused = event("w1", CREATED, T0, (Item("SKU-9", 100, 1, "hats"),))
    one = ledger.desired([first, reused], CLICK, TERMS, T0)
    other = ledger.desired([reused, first], CLICK, TERMS, T0)
    assert one == other
    assert sum(e.orders for e in one) == 1


def test_order_seen_again_with_other_items_is_flagged_not_summed() -> None:
    events = [event("w1", CREATED, T0), event("w9", CREATED, T0 + 5, [Item("SKU-1", 5990, 10)])]
    entries = ledger.desired(events, CLICK, TERMS, now_ms=T0)
    assert totals(entries)["accrual"] == 1198 + 480
    assert [e.reason for e in entries if e.kind == ledger.KIND_FLAG] == ["order_conflict"]
    # the same items again under another webhook id: a plain duplicate, no flag
    same = ledger.desired([event("w1", CREATED, T0), event("w8", CREATED, T0 + 5)], CLICK, TERMS, now_ms=T0)
    assert not [e for e in same if e.kind == ledger.KIND_FLAG]


def test_approval_is_a_transfer_and_late_reversal_is_approved() -> None:
    lock = rules.lock_ms(T0, TERMS.lock_days)
    events = [
        event("w1", CREATED, T0),
        event("w2", REFUNDED, T0 + 1, [Item("SKU-2", 1999, 1)]),
        event("w3", REFUNDED, lock, [Item("SKU-1", 5990, 1)]),  # exactly at the lock: after approval
    ]
    before = totals(ledger.desired(events, CLICK, TERMS, now_ms=lock - 1))
    after_entries = ledger.desired(events, CLICK, TERMS, now_ms=lock)
    after = totals(after_entries)
    # w3 happened at the lock: it is booked approved even by a run whose clock is a moment behind
    assert before["pending"] == 1198 + 480 - 160 and before["approved"] == -599
    assert after["pending"] == 0
    assert after["approved"] == 1198 + 480 - 160 - 599
    assert after["approval"] == 0  # transfers never change the balance
    assert next(e for e in after_entries if e.entry_id == "rev:w3:0").status == "approved"


def test_ineligible_order_books_one_zero_row_with_reason() -> None:
    bot = rules.ClickFacts(
        "c" * 30, True, True, found=True, ts_ms=T0 - DAY, creator_id="alice", merchant_id="m1", is_bot=True
    )
    entries = ledger.desired([event("w1", CREATED, T0)], bot, TERMS, now_ms=T0)
    assert [(e.entry_id, e.amount_minor, e.reason, e.creator_id) for e in entries] == [
        ("none:bot", 0, "bot", "alice")
    ]


def test_difference_appends_nothing_on_rerun_and_negates_what_is_gone() -> None:
    wanted = ledger.desired([event("w1", CREATED, T0)], CLICK, TERMS, now_ms=T0)
    assert ledger.difference(wanted, ledger.net(wanted)) == []
    stale = ledger.Entry("acc:7", "accrual", "pending", 55, orders=0)
    fix = ledger.difference(wanted, ledger.net([*wanted, stale]))
    assert [(e.entry_id, e.amount_minor) for e in fix] == [("acc:7", -55)]


# --- property: any arrival order, any duplication, runs in between: the in-order replay ---------------
# Two more clicks the same order id may be created again with: another creator's, and an earlier one of
# alice's. The create dated earliest credits the order, whichever arrives first.
DAVE_CLICK = rules.ClickFacts(
    "d" * 30, True, True, found=True, ts_ms=T0 - 3 * DAY, creator_id="dave", merchant_id="m1"
)
ALICE_EARLIER = rules.ClickFacts(
    "e" * 30, True, True, found=True, ts_ms=T0 - 4 * DAY, creator_id="alice", merchant_id="m1"
)
CLICKS = {c.click_id: c for c in (CLICK, DAVE_CLICK, ALICE_EARLIER)}


def created_via(webhook_id: str, click: rules.ClickFacts, currency: str, at_ms: int, items=ITEMS):
    return OrderEvent("m1", webhook_id, CREATED, "A-1", click.click_id, currency, at_ms, tuple(items))


def click_of(events: list[OrderEvent]) -> rules.ClickFacts | None:
    """What the attributor looks up: the click of the create that wins the fold (None: parked)."""
    created = ledger.fold(events).created
    return CLICKS[created.click_id] if created is not None else None


EVENTS = [
    event("w1", CREATED, T0),
    event("w2", REFUNDED, T0 + 10, [Item("SKU-2", 1999, 1)]),
    event("w3", REFUNDED, T0 + 20, [Item("SKU-1", 5990, 1), Item("SKU-2", 1999, 1)]),
    event("w4", CANCELLED, T0 + 30, ()),
    event("w5", REFUNDED, rules.lock_ms(T0, 30) + 5, [Item("SKU-1", 5990, 1)]),
    event("w6", CREATED, T0 + 40, [Item("SKU-9", 100, 1)]),  # conflicting re-creation
    event("w0", CREATED, T0 - DAY),  # the same order created a day before: the lock is a day earlier
    event("w7", REFUNDED, rules.lock_ms(T0, 30) - DAY // 2, [Item("SKU-2", 1999, 1)]),  # so approved
    created_via("w8", DAVE_CLICK, "EUR", T0 - 2 * DAY),  # created earlier through another creator's click
    created_via("w9", ALICE_EARLIER, "USD", T0 - 3 * DAY),  # earlier still, alice's other click, in USD
]


def _net(rows: list[ledger.Entry]) -> dict[str, tuple[int, int]]:
    return {k: (e.amount_minor, e.orders) for k, e in ledger.net(rows).items()}


@settings(max_examples=300, deadline=None)
@given(
    arrival=st.lists(st.sampled_from(range(len(EVENTS))), min_size=1, max_size=14),
    run_after=st.lists(st.booleans(), min_size=14, max_size=14),
    now_offsets=st.lists(st.integers(0, 70 * DAY), min_size=14, max_size=14),
)
# a refund near the lock booked pending, then the order's earlier creation arrives: it is approved
@example(arrival=[0, 7, 6], run_after=[False, True] + [False] * 12, now_offsets=[0] * 14)
def test_final_ledger_equals_in_order_replay(arrival, run_after, now_offsets) -> None:
    final_now = T0 + 80 * DAY
    delivered = [EVENTS[i] for i in sorted(set(arrival))]
    expected = _net(ledger.desired(delivered, click_of(delivered), TERMS, final_now))
    stored: list[ledger.Entry] = []
    seen: list[OrderEvent] = []
    clock = T0
    for step, index in enumerate(arrival):
        seen.append(EVENTS[index])
        if run_after[step]:
            clock = max(clock, T0 + now_offsets[step])  # time only moves forward
            wanted = ledger.desired(seen, click_of(seen), TERMS, clock)
            stored += ledger.difference(wanted, ledger.net(stored))
    stored += ledger.difference(ledger.desired(seen, click_of(seen), TERMS, final_now), ledger.net(stored))
    assert {k: v for k, v in _net(stored).items() if v != (0, 0) or k in expected} == expected
    # and per status and credit (what the nets above are keyed by too: an entry's status can change, and
    # so can its creator, currency and click)
    final = ledger.desired(delivered, click_of(delivered), TERMS, final_now)
    assert _balances(stored) == _balances(final)
    # and once more: nothing left to append
    assert ledger.difference(ledger.desired(seen, click_of(seen), TERMS, final_now), ledger.net(stored)) == []


# --- currencies, and what the ledger refuses to book: amounts past the bounds -----------------------
def _in(currency: str, webhook_id: str, kind: str, at_ms: int, items=ITEMS) -> OrderEvent:
    return OrderEvent("m1", webhook_id, kind, "A-1", "c" * 30, currency, at_ms, tuple(items))


def _rows(entries: list[ledger.Entry]) -> list[tuple[str, str, int, str]]:
    return [(e.entry_id, e.kind, e.amount_minor, e.reason) for e in entries]


@pytest.mark.parametrize(
    ("currency", "refund_currency", "pending"),
    [
        ("USD", "USD", 480),  # booked in the order's currency; a refund in it applies
        ("JPY", "JPY", 480),
        ("USD", "EUR", 1198 + 480),  # a refund in another currency than its order's: flagged, not applied
    ],
)
def test_commission_is_booked_in_the_orders_currency(currency, refund_currency, pending) -> None:
    """Which currencies a merchant accepts is checked at the webhook; the ledger books the order's own."""
    events = [_in(currency, "w1", CREATED, T0), _in(refund_currency, "w2", REFUNDED, T0 + 1, ITEMS[:1])]
    entries = ledger.desired(events, CLICK, TERMS, T0 + 2)
    assert totals(entries)["pending"] == pending
    assert {e.currency for e in entries} == {currency}
    flagged = [r for r in _rows(entries) if r[1] == "flag"]
    assert flagged == (
        []
        if refund_currency == currency
        else [("flag:currency_mismatch:w2:0", "flag", 0, "currency_mismatch")]
    )


@pytest.mark.parametrize(
    ("kind", "currency", "items"),
    [
        (REFUNDED, "USD", [Item("SKU-1", 5990, 1)]),
        (REFUNDED, "GBP", [Item("SKU-2", 1999, 3)]),
        (CANCELLED, "USD", []),
    ],
)
def test_refund_or_cancel_in_another_currency_is_flagged_not_applied(kind, currency, items) -> None:
    events = [event("w1", CREATED, T0), _in(currency, "w2", kind, T0 + 1, items)]
    entries = ledger.desired(events, CLICK, TERMS, now_ms=T0 + 2)
    assert totals(entries)["pending"] == 1198 + 480  # the order's commission stands
    assert [r for r in _rows(entries) if r[1] != "accrual"] == [
        ("flag:currency_mismatch:w2:0", "flag", 0, "currency_mismatch")
    ]
    # a later refund in the order's currency still applies against the whole order
    later = [*events, event("w3", REFUNDED, T0 + 3, [Item("SKU-2", 1999, 3)])]
    assert totals(ledger.desired(later, CLICK, TERMS, now_ms=T0 + 4))["pending"] == 1198


@pytest.mark.parametrize(
    "items",
    [
        [Item("S", 10**12, 1_000_000)],  # one line of 10^18: past the order bound
        [Item("S", 10**12, 11)],  # one line just over
        [Item(f"S{i}", 10**12, 1) for i in range(11)],  # lines fine, the order not
        [Item(f"S{i}", 10**12, 1_000_000) for i in range(1_000)],  # the 10^21
        [Item("S", 10**12 + 1, 1)],  # a field past its own limit (stored before the schema said so)
    ],
)
def test_order_past_the_money_bounds_books_a_flag_never_a_wrapped_amount(items) -> None:
    """Refused at the webhook since; an event from before that is still in the stream is flagged here."""
    events = [event("w1", CREATED, T0, items), event("w2", CANCELLED, T0 + 1, ())]
    assert _rows(ledger.desired(events, CLICK, TERMS, now_ms=rules.lock_ms(T0, 30))) == [
        ("flag:amount_out_of_range", "flag", 0, "amount_out_of_range")
    ]


def test_order_at_the_money_bound_is_booked() -> None:
    items = [Item("S1", 10**12, 5), Item("S2", 10**12, 5)]  # exactly 10^13
    entries = ledger.desired([event("w1", CREATED, T0, items)], CLICK, TERMS, now_ms=T0)
    assert [e.amount_minor for e in entries] == [4 * 10**11, 4 * 10**11]  # 8 % default rate


# --- property: codes assigned and removed, review decisions, all interleaved with runs and duplicates -----
CODE_OPS = [  # in the order a merchant makes them: (at_ms, creator or None to remove, rate_bps)
    (T0 - DAY, "bob", 500),  # active when the order happens
    (T0 + DAY, "carol", None),  # reassigned after it: changes nothing for it
    (T0 + 2 * DAY, None, None),  # removed after it: changes nothing either
]


def _coded(event_: OrderEvent) -> OrderEvent:
    return OrderEvent(
        event_.merchant_id,
        event_.webhook_id,
        event_.type,
        event_.order_id,
        event_.click_id,
        event_.currency,
        event_.occurred_ms,
        event_.items,
        ("Spring",),
    )


CODED_EVENTS = [_coded(e) for e in EVENTS]


def _spans(ops_done: int) -> dict[str, list[codes.Span]]:
    spans: list[codes.Span] = []
    for at_ms, creator, rate in CODE_OPS[:ops_done]:
        if creator is None:
            spans = codes.delete_spans(spans, at_ms) or spans
        else:
            spans = codes.put_spans(spans, "SPRING", creator, rate, at_ms)
    return {"SPRING": spans} if spans else {}


def _terms(priority: str, ops_done: int, review_on: bool = True) -> ledger.Terms:
    # click-to-order is one day (CLICK): a two-day minimum holds every click credit for review
    held = Policy(0, priority, ReviewRules(min_click_to_order_s=2 * 86_400 if review_on else 0))
    return ledger.Terms("m1", 30, 30, TERMS.versions, "EUR", codes=_spans(ops_done), policy=Snapshot((held,)))


def _balances(rows: list[ledger.Entry]) -> Counter:
    out: Counter = Counter()
    for e in rows:
        out[(e.creator_id, e.currency, e.status)] += e.amount_minor
    return Counter({k: v for k, v in out.items() if v})


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("event"), st.sampled_from(range(len(EVENTS)))),
            st.tuples(st.just("code"), st.just(0)),
            st.tuples(st.just("decide"), st.just(0)),
            st.tuples(st.just("run"), st.integers(0, 70 * DAY)),
        ),
        min_size=1,
        max_size=24,
    ),
    priority=st.sampled_from(["click", "code"]),
    verdict=st.sampled_from([None, "approve", "reject"]),
    decided_offset=st.integers(0, 70 * DAY),
    review_on=st.booleans(),
)
# found by chance: a refund booked in review, then an approval decided before it (RULE_TABLE below)
@example(
    steps=[("event", 0), ("event", 1), ("run", 0)],
    priority="click",
    verdict="approve",
    decided_offset=0,
    review_on=True,
)
def test_codes_and_review_interleaved_give_the_final_ledger(
    steps, priority, verdict, decided_offset, review_on
) -> None:
    final_now = T0 + 80 * DAY
    decision = review.Decision(verdict, T0 + decided_offset) if verdict else None
    delivered, ops_done, decided, clock = [], 0, None, T0
    stored: list[ledger.Entry] = []

    def run(now_ms: int) -> list[ledger.Entry]:
        terms = _terms(priority, ops_done, review_on)
        wanted = ledger.desired(delivered, click_of(delivered), terms, now_ms, decided)
        return ledger.difference(wanted, ledger.net(stored))

    for kind, value in steps:
        if kind == "event":
            delivered.append(CODED_EVENTS[value])  # duplicates and any order
        elif kind == "code":
            ops_done = min(len(CODE_OPS), ops_done + 1)  # the merchant's next change, in its time order
        elif kind == "decide":
            decided = decision
        else:
            clock = max(clock, T0 + value)
            stored += run(clock)
    ops_done, decided = len(CODE_OPS), decision  # everything has happened by the final run
    stored += run(final_now)
    assert run(final_now) == []  # and a rerun appends nothing
    # the same balances as one run over everything, whatever happened in between
    has_order = any(e.type == CREATED for e in delivered)
    all_events = sorted(set(delivered), key=lambda e: e.webhook_id)
    once = ledger.desired(
        all_events,
        click_of(all_events),
        _terms(priority, len(CODE_OPS), review_on),
        final_now,
        decision,
    )
    assert _balances(stored) == _balances(once)
    # transfers (approval, review) move money between statuses and never create any
    moved = Counter()
    for e in stored:
        moved[e.kind] += e.amount_minor
    assert sum(_balances(stored).values()) == moved["accrual"] + moved["reversal"]
    if has_order:
        # one creator at the end: the code's (bob) or the winning create's click's (alice or dave); a
        # create dated before the code's span (w9) is credited through its click whatever the priority
        creators = {k[0] for k in _balances(stored)}
        assert len(creators) <= 1 and creators <= {"bob", "alice", "dave"}
        held = {k[2] for k in _balances(stored)}
        if priority == "click" and verdict is None and review_on:
            assert held <= {"review"}  # the lock never approves a held accrual


# --- the rule `difference` broke: it compared the stored net per entry id, not per (entry id, status) ----
HELD = _terms("click", 0)  # every click credit held for review, no codes
LOCK = rules.lock_ms(T0, 30)
APPROVE_AT_T0 = review.Decision(review.APPROVE, T0)
REJECT_AT_T0 = review.Decision(review.REJECT, T0)
REFUND_1 = event("w2", REFUNDED, T0 + 10, [Item("SKU-2", 1999, 1)])  # 160 of line 1
REFUND_2 = event("w3", REFUNDED, T0 + 20, [Item("SKU-2", 1999, 2)])  # the rest of line 1: 320
LATE_REFUND = event("w5", REFUNDED, LOCK + 5, [Item("SKU-1", 5990, 1)])  # after the lock: approved
EARLIER_COPY = event("w0", CREATED, T0 - DAY)  # the same order created a day before: the lock is earlier
NEAR_LOCK_REFUND = event("w7", REFUNDED, LOCK - DAY // 2, [Item("SKU-1", 5990, 1)])


@pytest.mark.parametrize(
    ("first_events", "first_verdict", "events", "verdict", "terms"),
    [
        # a refund booked `review` while held, then an approval decided before it: the refund is `pending`
        ([event("w1", CREATED, T0), REFUND_1], None, [], APPROVE_AT_T0, HELD),
        # partial refunds, both booked `review` first, then the approval from before them
        ([event("w1", CREATED, T0), REFUND_1, REFUND_2], None, [], APPROVE_AT_T0, HELD),
        # a refund after the lock booked `review` while held: once approved (before it), it is `approved`
        ([event("w1", CREATED, T0), LATE_REFUND], None, [], APPROVE_AT_T0, HELD),
        # the approval known, a refund arriving later: booked `pending` at once (nothing to move)
        ([event("w1", CREATED, T0)], APPROVE_AT_T0, [REFUND_1], APPROVE_AT_T0, HELD),
        # a rejection decided before the refund: the refund's row goes, the rejection reverses it all
        ([event("w1", CREATED, T0), REFUND_1], None, [], REJECT_AT_T0, HELD),
        # a decision after the refund: the refund stays `review`, the decision moves what is left
        ([event("w1", CREATED, T0), REFUND_1], None, [], review.Decision(review.APPROVE, T0 + 11), HELD),
        # not held: a refund near the lock is `pending`, until a copy of the order created earlier arrives,
        # whose earlier lock makes it `approved`
        ([event("w1", CREATED, T0), NEAR_LOCK_REFUND], None, [EARLIER_COPY], None, TERMS),
    ],
    ids=[
        "approve-before-refund",
        "approve-before-partial-refunds",
        "approve-before-refund-after-lock",
        "approve-known-then-refund",
        "reject-before-refund",
        "approve-after-refund",
        "earlier-created-moves-the-lock",
    ],
)
def test_a_row_whose_status_changes_is_moved_not_kept(first_events, first_verdict, events, verdict, terms):
    """An entry's status is not fixed by its id: `difference` compares the net per (entry id, status), so
    a row booked in one status and wanted in another is reversed there and booked in the new one."""
    final_now = T0 + 80 * DAY
    stored = ledger.desired(first_events, CLICK, terms, T0 + DAY, first_verdict)
    wanted = ledger.desired([*first_events, *events], CLICK, terms, final_now, verdict)
    appended = ledger.difference(wanted, ledger.net(stored))
    stored += appended
    assert _balances(stored) == _balances(wanted)
    assert ledger.difference(wanted, ledger.net(stored)) == []
    # payouts key a row by (order, entry id, run, creator, currency): one run appends at most one `approved`
    # row per entry id of one credit
    approved = [e.entry_id for e in appended if e.status == "approved"]
    assert len(approved) == len(set(approved))


# --- the rule `difference` broke next: it compared per (entry id, status), not per credit ----------------
# An order created again with another click id or currency is credited by the create dated earliest; when
# that one arrives after the other was booked, the same entry ids (often the same amounts) belong to
# another creator, currency or click: the old credit's rows are reversed and the new ones booked.
FIRST = event("w1", CREATED, T0)
VIA_DAVE = created_via("w8", DAVE_CLICK, "EUR", T0 - 2 * DAY)
IN_USD = created_via("v1", CLICK, "USD", T0 - DAY // 2)
VIA_ALICE_EARLIER = created_via("w9", ALICE_EARLIER, "EUR", T0 - 3 * DAY)
DAVE_OTHER_ITEMS = created_via("w8", DAVE_CLICK, "EUR", T0 - 2 * DAY, [Item("SKU-1", 5990, 1, "shoes")])
PAST_LOCK = rules.lock_ms(T0, 30) + DAY


@pytest.mark.parametrize(
    ("first_events", "booked_at", "late", "moved_to"),
    [
        ([FIRST], T0, VIA_DAVE, ("dave", "EUR", "d" * 30)),  # another creator
        ([FIRST], T0, IN_USD, ("alice", "USD", "c" * 30)),  # another currency
        ([FIRST], T0, VIA_ALICE_EARLIER, ("alice", "EUR", "e" * 30)),  # the same creator, another click
        ([FIRST], PAST_LOCK, VIA_DAVE, ("dave", "EUR", "d" * 30)),  # the first credit already approved
        ([FIRST, REFUND_1], PAST_LOCK, VIA_DAVE, ("dave", "EUR", "d" * 30)),  # its refund moves too
        ([FIRST], PAST_LOCK, IN_USD, ("alice", "USD", "c" * 30)),
        ([FIRST], T0, DAVE_OTHER_ITEMS, ("dave", "EUR", "d" * 30)),  # other items too: a conflict
    ],
    ids=["creator", "currency", "click", "creator-approved", "refunded", "currency-approved", "items"],
)
def test_a_row_whose_credit_changes_is_moved_not_kept(first_events, booked_at, late, moved_to) -> None:
    final_now = PAST_LOCK + DAY
    stored = ledger.desired(first_events, click_of(first_events), TERMS, booked_at)
    events = [*first_events, late]
    wanted = ledger.desired(events, click_of(events), TERMS, final_now)
    appended = ledger.difference(wanted, ledger.net(stored))
    stored += appended
    assert _balances(stored) == _balances(wanted)  # the same as one run over everything
    assert ledger.difference(wanted, ledger.net(stored)) == []
    # every row with money is the new credit's, or nets to zero with the old credit's reversal
    credit = Counter()
    for e in stored:
        credit[(e.creator_id, e.currency, e.click_id)] += e.amount_minor
        credit[("orders", e.creator_id, e.currency, e.click_id)] += e.orders
    assert {k for k, v in credit.items() if v} == {moved_to, ("orders", *moved_to)}
    # each row reversed because of the move is a reversal under the old credit that says why
    reversed_ = [e for e in appended if (e.creator_id, e.currency, e.click_id) != moved_to and e.amount_minor]
    assert reversed_ and {(e.kind, e.reason) for e in reversed_} == {("reversal", ledger.REASON_CREDIT_MOVED)}
    # payouts key a row by (order, entry id, run, creator, currency): one run appends at most one
    # `approved` row per key, but for a move of the click alone (the same payout pays both rows)
    approved = [(e.entry_id, e.creator_id, e.currency) for e in appended if e.status == "approved"]
    if moved_to[:2] != ("alice", "EUR"):
        assert len(approved) == len(set(approved))


@pytest.mark.parametrize("late", [VIA_DAVE, IN_USD, VIA_ALICE_EARLIER], ids=["creator", "currency", "click"])
def test_a_create_dated_later_than_the_booked_one_moves_nothing(late) -> None:
    """The other direction: the create that arrives second is dated later, so the credit stays where it
    was booked (a zero `order_conflict` flag is all it adds), and a stored ledger with nothing new is
    left as it is."""
    later = msgspec.structs.replace(late, occurred_ms=T0 + 1)
    first = ledger.desired([FIRST], CLICK, TERMS, T0)
    assert ledger.difference(first, ledger.net(first)) == []
    events = [FIRST, later]
    appended = ledger.difference(ledger.desired(events, click_of(events), TERMS, T0), ledger.net(first))
    assert [(e.kind, e.amount_minor, e.reason) for e in appended] == [(ledger.KIND_FLAG, 0, "order_conflict")]


@settings(max_examples=200, deadline=None)
@given(
    arrival=st.lists(st.sampled_from(range(8)), min_size=1, max_size=12),  # EVENTS without w8, w9
    run_after=st.lists(st.booleans(), min_size=12, max_size=12),
    now_offsets=st.lists(st.integers(0, 70 * DAY), min_size=12, max_size=12),
)
def test_a_ledger_booked_under_the_old_key_is_left_as_it_is(arrival, run_after, now_offsets) -> None:
    """Upgrading re-books nothing: a ledger that runs compared per (entry id, status) built from events
    that never moved the credit gets nothing appended by the next run under the new key."""

    def old_key(entry: ledger.Entry) -> tuple[str, str]:
        return (entry.entry_id, entry.status)  # what `key` was

    stored: list[ledger.Entry] = []
    seen: list[OrderEvent] = []
    clock = T0
    with mock.patch.object(ledger, "key", old_key):
        for step, index in enumerate(arrival):
            seen.append(EVENTS[index])
            if run_after[step]:
                clock = max(clock, T0 + now_offsets[step])
                wanted = ledger.desired(seen, click_of(seen), TERMS, clock)
                stored += ledger.difference(wanted, ledger.net(stored))
        clock += DAY  # the last run before the upgrade
        stored += ledger.difference(ledger.desired(seen, click_of(seen), TERMS, clock), ledger.net(stored))
    assert ledger.difference(ledger.desired(seen, click_of(seen), TERMS, clock), ledger.net(stored)) == []


# --- a refund naming one line in several positions; refunds a unit at a time ---------------------------
def test_a_refund_naming_one_sku_in_several_positions_is_one_reversal_and_a_rerun_appends_nothing() -> None:
    """The same SKU three times in one refund reverses the line once, as a refund of 3 would. Booked as
    three rows of one entry id, each rerun compared every copy with the stored sum and appended again:
    the pending balance swung 599, 4193, -2995, ... and wrapped past Int64 in about 50 runs."""
    order = event("w1", CREATED, T0, [Item("SKU-1", 5990, 4, "shoes")])  # 2396
    thrice = event("w2", REFUNDED, T0 + 1, [Item("SKU-1", 5990, 1)] * 3)
    once = event("w2", REFUNDED, T0 + 1, [Item("SKU-1", 5990, 3)])
    booked = ledger.desired([order, thrice], CLICK, TERMS, now_ms=T0 + 2)
    assert booked == ledger.desired([order, once], CLICK, TERMS, now_ms=T0 + 2)
    assert [e.amount_minor for e in booked if e.kind == "reversal"] == [-1797]
    stored = ledger.net(booked)
    for _ in range(3):
        assert ledger.difference(ledger.desired([order, thrice], CLICK, TERMS, now_ms=T0 + 2), stored) == []


def test_difference_sums_a_key_given_twice_instead_of_appending_on_every_run() -> None:
    row = ledger.Entry("rev:w2:0", "reversal", "pending", -599, creator_id="alice", currency="EUR")
    wanted = [row, row, row]
    first = ledger.difference(wanted, {})
    assert [e.amount_minor for e in first] == [-1797]
    assert ledger.difference(wanted, ledger.net(first)) == []


def test_refunds_one_unit_at_a_time_never_take_back_more_than_the_accrual() -> None:
    """7 × 15 at 10 % earns 10 (10.5, half-even). Each refund of one unit rounded on its own (1.5 -> 2)
    took back 12 after six, with one unit still sold."""
    order = event("w1", CREATED, T0, [Item("SKU-1", 15, 7, "shoes")])
    refunds = [event(f"r{n}", REFUNDED, T0 + 1 + n, [Item("SKU-1", 15, 1)]) for n in range(7)]
    kept = []
    for done in range(1, 8):
        entries = ledger.desired([order, *refunds[:done]], CLICK, TERMS, now_ms=T0 + 10)
        kept.append(totals(entries)["pending"])
        assert kept[-1] >= (rules.commission_minor(15, 7 - done, 1000) if done < 7 else 0), done
    # each takes its own 2 (1.5) where the line keeps what 6, 5, 4, ... units earn (9, 7.5 -> 8, 6, 4.5 ->
    # 4, 3, 1.5 -> 2), 1 where that would leave it less; the last takes the rest
    assert kept == [9, 8, 6, 4, 3, 2, 0]
    last = {e.entry_id: e for e in ledger.desired([order, *refunds], CLICK, TERMS, now_ms=T0 + 10)}
    assert [last[f"rev:r{n}:0"].reason for n in range(7)] == ["refund_capped"] * 2 + [""] * 2 + [
        "refund_capped"
    ] * 2 + [""]


@given(
    quantity=st.integers(1, 40),
    price=st.integers(1, 5000),
    rate_bps=st.sampled_from([1, 333, 800, 1000, 1250, 5000, 10_000]),
    refunds=st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=4), min_size=1, max_size=8),
    lock_passed=st.booleans(),
)
@settings(max_examples=300)
def test_partial_refunds_keep_a_line_at_what_its_remaining_quantity_earns(
    quantity, price, rate_bps, refunds, lock_passed
) -> None:
    """Whatever the refunds (each naming the SKU in one or several positions), a line keeps at least what
    its remaining quantity earns and at most its accrual, exactly zero once all is refunded; a reversal
    takes back at most its items' own commission, and says so when it takes less; every rerun appends
    nothing."""
    terms = ledger.Terms("m1", 30, 30, [rules.RateVersion(1, 0, rate_bps, {})], "EUR")
    order = event("w1", CREATED, T0, [Item("SKU-1", price, quantity)])
    changes = [
        event(f"r{n}", REFUNDED, T0 + 1 + n, [Item("SKU-1", price, q) for q in positions])
        for n, positions in enumerate(refunds)
    ]
    now_ms = rules.lock_ms(T0, 30) + 1 if lock_passed else T0 + 100
    entries = ledger.desired([order, *changes], CLICK, terms, now_ms=now_ms)
    remaining = max(0, quantity - sum(map(sum, refunds)))
    kept = sum(e.amount_minor for e in entries)
    earned = rules.commission_minor(price, quantity, rate_bps)
    assert (rules.commission_minor(price, remaining, rate_bps) if remaining else 0) <= kept <= earned
    assert kept == 0 or remaining
    for e in (e for e in entries if e.kind == "reversal"):
        own = rules.commission_minor(price, e.quantity, rate_bps)
        assert e.amount_minor <= 0
        if remaining:  # no reversal took a whole remainder (which may round past its own share)
            assert -e.amount_minor <= own
        if e.reason == ledger.REASON_REFUND_CAPPED:
            assert -e.amount_minor < own
    assert ledger.difference(entries, ledger.net(entries)) == []


class _NoChangesButWalked(list):
    """An empty list of changes that reads as non-empty: `_credited` then takes its general path (the
    line bookkeeping) instead of the shortcut for orders with nothing to apply."""

    def __bool__(self) -> bool:
        return True


@settings(max_examples=200, deadline=None)
@given(
    now_offset_days=st.integers(min_value=-1, max_value=40),
    at_lock=st.booleans(),
    items=st.lists(
        st.builds(Item, st.sampled_from(["SKU-1", "SKU-2"]), st.integers(0, 10**6), st.integers(1, 50)),
        min_size=1,
        max_size=4,
    ),
)
def test_an_order_with_nothing_to_apply_books_as_the_general_path_would(now_offset_days, at_lock, items):
    """The shortcut for an order with no refund, cancel or review decision (`_credited`) gives the same
    entries as walking its lines with no change: before its lock, at it, and after (approval transfer)."""
    folded = ledger.fold([event("w1", CREATED, T0, items)])
    now_ms = rules.lock_ms(T0, TERMS.lock_days) if at_lock else T0 + now_offset_days * DAY
    shortcut = ledger.explain_folded(folded, CLICK, TERMS, now_ms)[1]
    walked = ledger.Folded(folded.created, folded.conflicts, _NoChangesButWalked(), folded.received_ms)
    assert shortcut == ledger.explain_folded(walked, CLICK, TERMS, now_ms)[1]
    assert any(e.kind == "approval" for e in shortcut) == (now_ms >= rules.lock_ms(T0, TERMS.lock_days))


REUSED_AFTER_9_DAYS = msgspec.structs.replace(event("w1", CREATED, T0), received_ms=T0 + 9 * DAY)
REFUND_1 = event("w2", REFUNDED, T0 + 1, [Item("SKU-1", 5990, 1)])


@pytest.mark.parametrize(
    ("events", "flagged"),
    [
        # past the acceptor's 7 days a cancel came under the create's webhook-id: not applied, but flagged
        ([event("w1", CREATED, T0), event("w1", CANCELLED, T0 + DAY, ())], ["w1"]),
        ([event("w1", CREATED, T0), event("w1", REFUNDED, T0 + 1, [Item("SKU-1", 5990, 1)])], ["w1"]),
        # the same create sent again after the 7 days (received later): the same event, no flag
        ([event("w1", CREATED, T0), REUSED_AFTER_9_DAYS], []),
        # a refund's id reused twice: one flag for it; the refund the fold keeps is applied
        ([event("w1", CREATED, T0), REFUND_1, event("w2", CANCELLED, T0 + 2, ()),
          event("w2", REFUNDED, T0 + 3, [Item("SKU-2", 1999, 1)])], ["w2"]),
        ([event("w1", CREATED, T0), event("w2", CANCELLED, T0 + 1, ())], []),
    ],
)  # fmt: skip
def test_an_event_under_a_reused_webhook_id_is_flagged_not_dropped_silently(events, flagged) -> None:
    """Found by an adversarial pass: past the webhook's idempotency window a sender reused a webhook-id
    for another event; the fold keeps one event per id, and the other vanished without a trace."""
    entries = ledger.desired(events, CLICK, TERMS, now_ms=T0 + 2 * DAY)
    flags = [(e.entry_id, e.event_id, e.amount_minor) for e in entries if e.reason == "webhook_id_reused"]
    assert flags == [(f"flag:reused:{w}", w, 0) for w in flagged]
    kept = ledger.desired(ledger.in_fold_order(events), CLICK, TERMS, now_ms=T0 + 2 * DAY)
    assert [e for e in entries if e.reason != "webhook_id_reused"] == kept  # the fold's rows, unchanged
