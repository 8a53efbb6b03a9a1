"""Payout rules: netting tables, and a model of the whole ledger (orders, refunds, cancels, attribution
runs, payout batches, confirmations and failures) checked under hypothesis for the issue's invariants."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import ledger, payouts, rules
from attribution.ledger import CANCELLED, CREATED, REFUNDED, Item, OrderEvent
from attribution.payouts import Line


def line(
    creator: str, currency: str, amount: int, order: str = "O", entry: str = "e", run: str = "r"
) -> Line:
    return Line(creator, currency, order, entry, run, "approval", "SKU", 1, 100, 1000, amount, "", 0)


@pytest.mark.parametrize(
    ("amounts", "minimum", "expected"),
    [
        ([1198], 0, 1198),
        ([1198, -1198], 0, None),  # nets to zero: no payout
        ([500, -1198], 0, None),  # negative: carried, never a negative payout
        ([2396, -1198], 0, 1198),  # a reversal after an earlier payout is netted
        ([999], 1000, None),  # below the minimum: left for a later batch
        ([1000], 1000, 1000),  # at the minimum: paid
        ([1, 1, 1], 3, 3),
    ],
)
def test_plan_nets_each_creator_and_currency(amounts, minimum, expected) -> None:
    rows = [line("alice", "EUR", a, entry=f"e{i}") for i, a in enumerate(amounts)]
    planned = payouts.plan("m1", 1000, minimum, rows)
    assert [p.amount_minor for p in planned] == ([] if expected is None else [expected])
    if planned:
        assert sorted(x.entry_id for x in planned[0].lines) == sorted(r.entry_id for r in rows)


def test_plan_makes_one_payout_per_creator_and_currency_with_stable_ids() -> None:
    rows = [
        line("alice", "EUR", 100),
        line("alice", "USD", 200),
        line("bob", "EUR", 300),
        line("bob", "EUR", -50),
    ]
    planned = payouts.plan("m1", 1000, 0, rows)
    assert [(p.creator_id, p.currency, p.amount_minor) for p in planned] == [
        ("alice", "EUR", 100),
        ("alice", "USD", 200),
        ("bob", "EUR", 250),
    ]
    assert [p.payout_id for p in planned] == [p.payout_id for p in payouts.plan("m1", 1000, 0, rows)]
    assert len({p.payout_id for p in planned} | {p.payout_id for p in payouts.plan("m1", 1001, 0, rows)}) == 6
    assert {payouts.merchant_of(p.payout_id) for p in planned} == {"m1"}


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (payouts.CREATE, [("payout:approved", "approved", -7), ("payout:in_payout", "in_payout", 7)]),
        (payouts.CONFIRM, [("confirm:in_payout", "in_payout", -7), ("confirm:paid", "paid", 7)]),
        (payouts.FAIL, [("fail:in_payout", "in_payout", -7), ("fail:approved", "approved", 7)]),
    ],
)
def test_each_step_is_a_transfer_that_sums_to_zero(step, expected) -> None:
    assert payouts.transfer(step, 7) == expected


# --- the model: the attributor's append-only difference plus payout batches, all in memory ------------
DAY = rules.MS_PER_DAY
T0 = 100 * DAY
TERMS = ledger.Terms("m1", 30, 30, [rules.RateVersion(1, 0, 800, {"shoes": 1000})], "EUR")
CLICKS = {
    "alice": rules.ClickFacts(
        "a" * 30, True, True, found=True, ts_ms=T0 - DAY, creator_id="alice", merchant_id="m1"
    ),
    "bob": rules.ClickFacts(
        "b" * 30, True, True, found=True, ts_ms=T0 - DAY, creator_id="bob", merchant_id="m1"
    ),
}
SHOES, HATS = Item("SKU-1", 5990, 2, "shoes"), Item("SKU-2", 1999, 3, "hats")


def _ev(wid: str, kind: str, order: str, who: str, currency: str, at_ms: int, items=()) -> OrderEvent:
    return OrderEvent("m1", wid, kind, order, CLICKS[who].click_id, currency, at_ms, tuple(items))


# Orders of two creators in two currencies; refunds and cancels before and after each order's lock.
EVENTS = [
    _ev("w1", CREATED, "O-1", "alice", "EUR", T0, (SHOES, HATS)),
    _ev("w2", REFUNDED, "O-1", "alice", "EUR", T0 + 40 * DAY, (HATS,)),
    _ev("w3", CREATED, "O-2", "alice", "USD", T0 + DAY, (SHOES,)),
    _ev("w4", CANCELLED, "O-2", "alice", "USD", T0 + 50 * DAY),
    _ev("w5", CREATED, "O-3", "bob", "EUR", T0 + 2 * DAY, (HATS,)),
    _ev("w6", REFUNDED, "O-3", "bob", "EUR", T0 + 3 * DAY, (Item("SKU-2", 1999, 1, "hats"),)),
    _ev("w7", CREATED, "O-4", "alice", "EUR", T0 + 5 * DAY, (HATS,)),
    _ev("w8", REFUNDED, "O-4", "alice", "USD", T0 + 6 * DAY, (HATS,)),  # another currency: flagged only
    _ev("w9", CANCELLED, "O-4", "alice", "EUR", T0 + 60 * DAY),
    # O-3 created earlier through alice's click: whenever it arrives, O-3 is alice's, and a payout of
    # bob's for it is netted by the reversal in his next batch
    _ev("w10", CREATED, "O-3", "alice", "EUR", T0 + DAY, (HATS,)),
]


@dataclass
class Row:
    order_id: str
    entry: ledger.Entry
    run_id: str
    booked_ms: int

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        e = self.entry
        return (self.order_id, e.entry_id, self.run_id, e.creator_id, e.currency)


@dataclass
class Model:
    rows: list[Row] = field(default_factory=list)
    seen: dict[str, list[OrderEvent]] = field(default_factory=lambda: defaultdict(list))
    signs: Counter = field(default_factory=Counter)
    lines: dict[str, list[Line]] = field(default_factory=dict)  # payout id → the rows it pays
    status: dict[str, str] = field(default_factory=dict)
    amount: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    batches: set[int] = field(default_factory=set)
    transfers: Counter = field(default_factory=Counter)  # (creator, currency, status) → amount
    runs: int = 0

    def deliver(self, event: OrderEvent) -> None:
        self.seen[event.order_id].append(event)

    def attribute(self, now_ms: int) -> None:
        self.runs += 1
        for order_id, events in sorted(self.seen.items()):
            created = ledger.fold(events).created
            click = CLICKS["alice" if created and created.click_id[0] == "a" else "bob"] if created else None
            stored = ledger.net([r.entry for r in self.rows if r.order_id == order_id])
            for entry in ledger.difference(ledger.desired(events, click, TERMS, now_ms), stored):
                self.rows.append(Row(order_id, entry, f"run{self.runs}", now_ms))

    def _as_line(self, row: Row) -> Line:
        e = row.entry
        return Line(e.creator_id, e.currency, row.order_id, e.entry_id, row.run_id, e.kind, e.sku, e.quantity,
                    e.basis_minor, e.rate_bps, e.amount_minor, "", row.booked_ms)  # fmt: skip

    def create(self, until_ms: int, minimum: int) -> None:
        if until_ms in self.batches:
            return  # the same (merchant, until): the same batch
        self.batches.add(until_ms)
        statuses = {r.key: r.entry.status for r in self.rows}
        payable = payouts.payable([self._as_line(r) for r in self.rows], self.signs, until_ms, statuses)
        for planned in payouts.plan("m1", until_ms, minimum, payable):
            assert planned.amount_minor > 0 and planned.amount_minor >= minimum
            self.lines[planned.payout_id] = planned.lines
            for paid in planned.lines:
                self.signs[paid.key] += 1
            self.status[planned.payout_id] = payouts.STATUS_IN_PAYOUT
            self.amount[planned.payout_id] = (planned.creator_id, planned.currency, planned.amount_minor)
            self._book(planned.payout_id, payouts.CREATE)

    def step(self, index: int, step: str) -> None:
        ids = sorted(self.status)
        if not ids:
            return
        payout_id = ids[index % len(ids)]
        done = payouts.STATUS_PAID if step == payouts.CONFIRM else payouts.STATUS_FAILED
        if self.status[payout_id] != payouts.STATUS_IN_PAYOUT:
            return  # idempotent (already done) or 409 (the other end): nothing changes either way
        self.status[payout_id] = done
        if step == payouts.FAIL:
            for paid in self.lines[payout_id]:
                self.signs[paid.key] -= 1
        self._book(payout_id, step)

    def _book(self, payout_id: str, step: str) -> None:
        creator, currency, amount = self.amount[payout_id]
        for _, status, delta in payouts.transfer(step, amount):
            self.transfers[(creator, currency, status)] += delta

    def balances(self) -> dict[tuple[str, str, str], int]:
        out = Counter(self.transfers)
        for r in self.rows:
            out[(r.entry.creator_id, r.entry.currency, r.entry.status)] += r.entry.amount_minor
        return {k: v for k, v in out.items() if v}

    def check(self) -> None:
        """The invariants that hold after every operation, whatever the interleaving."""
        assert all(s in (0, 1) for s in self.signs.values()), "a ledger row paid twice"
        assert all(a > 0 for _, _, a in self.amount.values()), "a payout not positive"
        for payout_id, paid in self.lines.items():
            assert sum(x.amount_minor for x in paid) == self.amount[payout_id][2]
        balances = self.balances()
        accrued: Counter = Counter()
        unpaid_approved: Counter = Counter()
        for r in self.rows:
            accrued[(r.entry.creator_id, r.entry.currency)] += r.entry.amount_minor
            if r.entry.status == "approved" and self.signs[r.key] == 0:
                unpaid_approved[(r.entry.creator_id, r.entry.currency)] += r.entry.amount_minor
        by_pair: Counter = Counter()
        for (creator, currency, _), amount in balances.items():
            by_pair[(creator, currency)] += amount
        assert +by_pair == +accrued  # sum over statuses = accruals - reversals
        for pair in set(accrued) | set(unpaid_approved):
            assert balances.get((*pair, "approved"), 0) == unpaid_approved[pair]
            for status in (payouts.STATUS_IN_PAYOUT, payouts.STATUS_PAID):
                expected = sum(
                    a for p, (c, cu, a) in self.amount.items() if (c, cu) == pair and self.status[p] == status
                )
                assert balances.get((*pair, status), 0) == expected


def expected_totals() -> Counter:
    """accruals - reversals per (creator, currency) of every event, replayed in order at the end."""
    out: Counter = Counter()
    by_order: dict[str, list[OrderEvent]] = defaultdict(list)
    for e in EVENTS:
        by_order[e.order_id].append(e)
    for events in by_order.values():
        created = ledger.fold(events).created
        click = CLICKS["alice" if created.click_id[0] == "a" else "bob"]
        for entry in ledger.desired(events, click, TERMS, T0 + 200 * DAY):
            out[(entry.creator_id, entry.currency)] += entry.amount_minor
    return +out


OPS = st.one_of(
    st.tuples(st.just("deliver"), st.integers(0, len(EVENTS) - 1)),
    st.tuples(st.just("attribute"), st.integers(0, 100)),
    st.tuples(st.just("create"), st.integers(0, 100), st.sampled_from([0, 0, 500, 5000])),
    st.tuples(st.just("confirm"), st.integers(0, 20)),
    st.tuples(st.just("fail"), st.integers(0, 20)),
)


def run(program: list[tuple], model: Model) -> Model:
    clock = T0
    for op in program:
        if op[0] == "deliver":
            model.deliver(EVENTS[op[1]])
        elif op[0] == "attribute":
            clock = max(clock, T0 + op[1] * DAY)
            model.attribute(clock)
        elif op[0] == "create":
            model.create(min(clock, T0 + op[1] * DAY), op[2])  # until is never in the future
        else:
            model.step(op[1], payouts.CONFIRM if op[0] == "confirm" else payouts.FAIL)
        model.check()
    return model


def shuffled_and_duplicated(program: list[tuple], seed: int) -> list[tuple]:
    """Deliveries permuted between the other operations, and every operation sent twice."""
    rng = random.Random(seed)
    out: list[tuple] = []
    segment: list[tuple] = []
    for op in [*program, ("end",)]:
        if op[0] == "deliver":
            segment.append(op)
            continue
        rng.shuffle(segment)
        out += [x for d in segment for x in (d, d)]
        segment = []
        if op[0] != "end":
            out += [op, op]
    return out


@settings(max_examples=250, deadline=None)
@given(program=st.lists(OPS, max_size=40), seed=st.integers(0, 2**16))
def test_payouts_interleaved_with_orders_keep_every_invariant(program, seed) -> None:
    once = run(program, Model())
    twice = run(shuffled_and_duplicated(program, seed), Model())
    # any order of deliveries between the same runs, and every event, run and payout call duplicated:
    # the same balances per (creator, currency, status) and the same payouts
    assert once.balances() == twice.balances()
    assert (once.status, once.amount) == (twice.status, twice.amount)
    # then everything delivered, attributed past every lock, paid out and confirmed
    settle = [("deliver", i) for i in range(len(EVENTS))] + [
        ("attribute", 200),
        ("attribute", 201),
        ("create", 201, 0),
    ]
    final = run(settle + [("confirm", i) for i in range(40)], once)
    final.check()
    balances = final.balances()
    for pair, total in expected_totals().items():
        statuses = {s: a for (c, cu, s), a in balances.items() if (c, cu) == pair}
        assert sum(statuses.values()) == total
        assert statuses.get("pending", 0) == statuses.get(payouts.STATUS_IN_PAYOUT, 0) == 0
        assert statuses.get("approved", 0) <= 0  # only a reversal after a payout can leave a debt
        assert statuses.get(payouts.STATUS_PAID, 0) >= total
