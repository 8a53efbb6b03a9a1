"""The attributor's fast booking path against the rules as they were written before issue 16's speed-up:
ledger rows and accrual entries are now built positionally (in field order) and a single rate version is
taken without sorting. Over a mixed, generated set of orders (refunds, partial refunds, cancels, codes,
clicks of other creators, windows, versioned rates, currencies) every row must equal the one the keyword
form builds, so a field put in the wrong position (or a column added to one side only) fails here; and
a stored row read back positionally, as a run reads its stored ledger, is the entry it was booked from."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import codes, ledger, rules
from attribution.booking import ENTRY_FIELDS, entry_fields_of, row
from attribution.decision import Decision
from attribution.ledger import CANCELLED, CREATED, REFUNDED, Item, OrderEvent
from attribution.policy import Policy, ReviewRules, Snapshot
from core.rows import CommissionRow

DAY = rules.MS_PER_DAY
T0 = 200 * DAY
NOW_MS = T0 + 90 * DAY


def row_by_name(merchant_id: str, order_id: str, entry: ledger.Entry, now_ms: int, run_id: str):
    """The ledger row as the attributor built it before: by column name."""
    return CommissionRow(
        merchant_id=merchant_id,
        order_id=order_id,
        effective_at=entry.effective_ms // 1000,
        booked_ms=now_ms,
        run_id=run_id,
        **{f: getattr(entry, f) for f in ENTRY_FIELDS},
    )


def accruals_by_name(order: OrderEvent, decision: Decision, terms: ledger.Terms) -> list[ledger.Entry]:
    """The accrual lines as ledger._accruals built them before: keyword arguments, the version sorted."""
    credit = decision.credit
    assert credit is not None
    held = bool(credit.review_reason)
    prefix = ("code:" if credit.attributed_by == "code" else "") + ("review:" if held else "")
    version = version_by_sorting(terms.versions, credit.rate_at_ms)
    out = []
    for index, item in enumerate(order.items):
        if credit.rate_bps is not None:
            rate, rule, number = credit.rate_bps, "code", version.version
        else:
            applied = rules.rate_for(version, credit.creator_id, item.sku, item.category)
            rate, rule, number = applied.rate_bps, applied.rule, applied.version
        out.append(
            ledger.Entry(
                f"{prefix}acc:{index}",
                "accrual",
                "review" if held else "pending",
                rules.commission_minor(item.unit_price_minor, item.quantity, rate),
                orders=int(index == 0),
                sku=item.sku,
                quantity=item.quantity,
                basis_minor=item.unit_price_minor * item.quantity,
                rate_bps=rate,
                rate_rule=rule,
                rate_version=number,
                reason=credit.review_reason,
                event_id=order.webhook_id,
                effective_ms=order.occurred_ms,
                creator_id=credit.creator_id,
                click_id=order.click_id,
                currency=order.currency,
                attributed_by=credit.attributed_by,
                code=credit.code,
            )
        )
    return out


def version_by_sorting(versions: list[rules.RateVersion], at_ms: int) -> rules.RateVersion:
    chosen = versions[0]
    for candidate in sorted(versions, key=lambda v: (v.effective_ms, v.version)):
        if candidate.effective_ms <= at_ms:
            chosen = candidate
    return chosen


SKUS = ["SKU-1", "SKU-2", "SKU-3"]
items_st = st.lists(
    st.builds(
        Item,
        sku=st.sampled_from(SKUS),
        unit_price_minor=st.integers(0, 10**7),
        quantity=st.integers(1, 5),
        category=st.sampled_from(["", "shoes", "hats"]),
    ),
    min_size=1,
    max_size=3,
).map(tuple)
versions_st = st.lists(
    st.builds(
        rules.RateVersion,
        version=st.integers(1, 9),
        effective_ms=st.integers(T0 - 40 * DAY, T0 + 5 * DAY),
        default_bps=st.integers(0, 10_000),
        categories=st.dictionaries(st.sampled_from(["shoes", "hats"]), st.integers(0, 10_000)),
        skus=st.dictionaries(st.sampled_from(SKUS), st.integers(0, 10_000)),
        creators=st.dictionaries(st.sampled_from(["alice", "bob"]), st.integers(0, 10_000)),
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def orders(draw):
    currency = draw(st.sampled_from(["EUR", "USD"]))
    items = draw(items_st)
    click_id = draw(st.sampled_from(["c" * 30, ""]))
    order_ms = T0 + draw(st.integers(0, 3 * DAY))
    codes_ = draw(st.sampled_from([(), ("Spring",), ("Nope", "spring")]))
    created = OrderEvent("m1", "w0", CREATED, "O-1", click_id, currency, order_ms, items, codes_)
    changes = []
    for n in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from([REFUNDED, REFUNDED, CANCELLED]))
        refunded = tuple(
            Item(i.sku, i.unit_price_minor, draw(st.integers(1, i.quantity + 1)), i.category)
            for i in draw(st.lists(st.sampled_from(items), max_size=2))
        )
        at_ms = order_ms + draw(st.integers(-DAY, 60 * DAY))
        other = draw(st.sampled_from([currency, currency, "GBP"]))
        changes.append(OrderEvent("m1", f"w{n + 1}", kind, "O-1", click_id, other, at_ms, refunded))
    click = rules.ClickFacts(
        click_id,
        True,
        True,
        found=draw(st.booleans()),
        ts_ms=order_ms - draw(st.integers(-DAY, 40 * DAY)),
        creator_id=draw(st.sampled_from(["alice", "bob"])),
        merchant_id=draw(st.sampled_from(["m1", "m1", "m2"])),
    )
    return [created, *changes], click


@settings(max_examples=400, deadline=None)
@given(
    order=orders(),
    versions=versions_st,
    priority=st.sampled_from(["click", "code"]),
    code_rate=st.sampled_from([None, 250]),
    review_days=st.sampled_from([0, 2]),
    window_days=st.sampled_from([1, 30]),
)
def test_fast_rows_equal_the_rows_built_by_name(
    order, versions, priority, code_rate, review_days, window_days
):
    events, click = order
    spans = codes.put_spans([], "SPRING", "bob", code_rate, T0 - 50 * DAY)
    policy = Policy(0, priority, ReviewRules(min_click_to_order_s=review_days * 86_400))
    terms = ledger.Terms(
        "m1", window_days, 30, versions, "EUR", codes={"SPRING": spans}, policy=Snapshot((policy,))
    )
    decision, wanted = ledger.explain(events, click, terms, NOW_MS)
    for entry in wanted:
        assert row("m1", "O-1", entry, NOW_MS, "r1") == row_by_name("m1", "O-1", entry, NOW_MS, "r1")
        # and read back as the run reads its stored ledger (positionally): the same entry
        assert ledger.Entry(*entry_fields_of(row("m1", "O-1", entry, NOW_MS, "r1"))) == entry
    if decision is not None and decision.credit is not None:
        accruals = [e for e in wanted if e.kind == "accrual"]
        assert accruals == accruals_by_name(events[0], decision, terms)


@given(versions=versions_st, at_ms=st.integers(T0 - 50 * DAY, T0 + 10 * DAY))
def test_rate_version_at_equals_the_sorted_scan(versions, at_ms):
    assert rules.version_at(versions, at_ms) == version_by_sorting(versions, at_ms)


@given(versions=versions_st, at_ms=st.integers(T0 - 50 * DAY, T0 + 10 * DAY))
def test_the_terms_version_lookup_equals_the_sorted_scan(versions, at_ms):
    """Terms sorts its versions once, at construction: the lookup is the scan over the versions given."""
    terms = ledger.Terms("m1", 30, 30, versions, "EUR")
    assert terms.version_at(at_ms) is version_by_sorting(versions, at_ms)


def test_two_terms_in_one_process_each_book_their_own_versions():
    """What a Terms derives from its versions is its own: a second merchant's (or run's) terms with other
    versions, built after the first one was used, book by theirs, and the first keeps booking by its own."""
    events = [OrderEvent("m1", "w0", CREATED, "O-1", "c" * 30, "EUR", T0, (Item("SKU-1", 10_000, 1),))]
    click = rules.ClickFacts(
        "c" * 30, True, True, found=True, ts_ms=T0 - DAY, creator_id="a", merchant_id="m1"
    )

    def accrued(terms: ledger.Terms) -> tuple[int, int]:
        accrual = ledger.desired(events, click, terms, T0)[0]
        return accrual.amount_minor, accrual.rate_version

    first = ledger.Terms(
        "m1", 30, 30, [rules.RateVersion(1, 0, 800), rules.RateVersion(2, T0 - 2 * DAY, 900)], "EUR"
    )
    assert accrued(first) == (900, 2)
    second = ledger.Terms("m1", 30, 30, [rules.RateVersion(1, 0, 500), rules.RateVersion(3, T0, 700)], "EUR")
    assert accrued(second) == (500, 1)
    assert accrued(first) == (900, 2)
