"""Pure rules of discount codes, attribution priority, review and PATCH validation, table-driven."""

from __future__ import annotations

import msgspec
import pytest

from attribution import codes, decision, policy, review, rules
from attribution.codes import Span
from attribution.policy import Policy, ReviewRules
from tests.unit.folding import FOLDING

DAY = rules.MS_PER_DAY
T0 = 100 * DAY
ALICE_CLICK = rules.ClickFacts(
    "c" * 30, True, True, found=True, ts_ms=T0 - DAY, creator_id="alice", merchant_id="m1"
)
NO_CLICK = rules.ClickFacts("", False, False)
SPANS = {
    "BOB10": [Span("BOB10", "bob", T0 - 10 * DAY, 0, 500)],
    "GONE": [Span("Gone", "carol", T0 - 10 * DAY, T0 - DAY)],
    # reassigned: alice until T0, then dave
    "MOVE": [Span("MOVE", "alice", T0 - 10 * DAY, T0), Span("MOVE", "dave", T0, 0)],
    "LATER": [Span("LATER", "erin", T0 + DAY)],
}


@pytest.mark.parametrize(
    ("sent", "at_ms", "expected"),
    [
        (["bob10"], T0, [("bob10", "active", "bob")]),
        (["Bob10", "BOB10"], T0, [("Bob10", "active", "bob")]),  # one code, first spelling
        (["nope"], T0, [("nope", "unknown", None)]),
        (["gone"], T0, [("gone", "inactive", "carol")]),
        (["GONE"], T0 - 2 * DAY, [("GONE", "active", "carol")]),  # before its removal
        (["move"], T0 - 1, [("move", "active", "alice")]),
        (["move"], T0, [("move", "active", "dave")]),  # the span end is exclusive
        (["later"], T0, [("later", "inactive", "erin")]),  # not yet assigned
        (["gone", "bob10"], T0, [("gone", "inactive", "carol"), ("bob10", "active", "bob")]),
        ([], T0, []),
    ],
)
def test_order_codes_against_spans(sent, at_ms, expected) -> None:
    checks = codes.check_order_codes(sent, SPANS, at_ms)
    assert [(c.code, c.status, c.span.creator_id if c.span else None) for c in checks] == expected


@pytest.mark.parametrize(
    ("click", "sent", "priority", "expected"),
    [
        (ALICE_CLICK, [], "click", ("alice", "click", "", None)),
        (NO_CLICK, ["bob10"], "click", ("bob", "code", "BOB10", 500)),
        (ALICE_CLICK, ["bob10"], "click", ("alice", "click", "", None)),
        (ALICE_CLICK, ["bob10"], "code", ("bob", "code", "BOB10", 500)),
        # the same creator either way: the click credits, at the click's rates
        (ALICE_CLICK, ["move"], "code", ("dave", "code", "MOVE", None)),
        (ALICE_CLICK, ["gone"], "code", ("alice", "click", "", None)),  # an inactive code changes nothing
        (NO_CLICK, ["gone"], "code", None),
        (NO_CLICK, [], "code", None),
        # an ineligible click (a bot) leaves the code to credit
        (
            rules.ClickFacts(
                "c" * 30, True, True, found=True, ts_ms=T0, creator_id="alice", merchant_id="m1", is_bot=True
            ),
            ["bob10"],
            "click",
            ("bob", "code", "BOB10", 500),
        ),
    ],
)
def test_who_is_credited(click, sent, priority, expected) -> None:
    made = decision.decide(click, "m1", 30, T0, tuple(sent), SPANS, Policy(0, priority))
    credit = made.credit
    got = None if credit is None else (credit.creator_id, credit.attributed_by, credit.code, credit.rate_bps)
    assert got == expected


def test_code_credit_uses_the_order_time_for_rates_and_no_window() -> None:
    old_click = rules.ClickFacts(
        "c" * 30, True, True, found=True, ts_ms=T0 - 90 * DAY, creator_id="alice", merchant_id="m1"
    )
    made = decision.decide(old_click, "m1", 30, T0, ("bob10",), SPANS, Policy(0))
    assert made.click_reason == rules.REASON_EXPIRED
    assert made.credit.attributed_by == "code" and made.credit.rate_at_ms == T0


@pytest.mark.parametrize(
    ("outcome_click", "sent", "outcome"),
    [
        (NO_CLICK, ["gone"], decision.REASON_NO_ACTIVE_CODE),
        (NO_CLICK, [], rules.REASON_NO_CLICK_ID),
        (rules.ClickFacts("c" * 30, True, True), ["gone"], rules.REASON_NO_CLICK),
        (ALICE_CLICK, [], "credited"),
    ],
)
def test_outcome_names_the_reason(outcome_click, sent, outcome) -> None:
    made = decision.decide(outcome_click, "m1", 30, T0, tuple(sent), SPANS, Policy(0))
    assert made.outcome == outcome


def _click(ts_ms: int, ip_clicks: int = 1) -> rules.ClickFacts:
    return rules.ClickFacts(
        "c" * 30,
        True,
        True,
        found=True,
        ts_ms=ts_ms,
        creator_id="alice",
        merchant_id="m1",
        ip_hour_clicks=ip_clicks,
    )


@pytest.mark.parametrize(
    ("rules_", "click", "order_ms", "expected"),
    [
        (ReviewRules(), _click(T0), T0, []),  # every rule off
        (ReviewRules(60), _click(T0), T0 + 59_999, [("min_click_to_order_s", 59, True)]),
        (ReviewRules(60), _click(T0), T0 + 60_000, [("min_click_to_order_s", 60, False)]),
        (ReviewRules(60), None, T0, [("min_click_to_order_s", None, False)]),  # a code order, no click
        (ReviewRules(0, 5), _click(T0, 5), T0, [("max_clicks_per_ip_hour", 5, False)]),
        (ReviewRules(0, 5), _click(T0, 6), T0, [("max_clicks_per_ip_hour", 6, True)]),
        (
            ReviewRules(60, 5),
            _click(T0, 6),
            T0 + 1,
            [("min_click_to_order_s", 0, True), ("max_clicks_per_ip_hour", 6, True)],
        ),
    ],
)
def test_review_rules(rules_, click, order_ms, expected) -> None:
    checks = review.check(rules_, click, order_ms)
    assert [(c.rule, c.observed, c.tripped) for c in checks] == expected
    assert review.held_reason(checks) == next((rule for rule, _, tripped in expected if tripped), "")


def test_review_judges_only_the_credited_creators_click() -> None:
    held = Policy(0, "code", ReviewRules(min_click_to_order_s=3600))
    # alice's click an instant before the order, but bob's code credits: bob is not held for it
    made = decision.decide(_click(T0), "m1", 30, T0 + 1, ("bob10",), SPANS, held)
    assert made.credit.creator_id == "bob" and made.credit.review_reason == ""
    made = decision.decide(_click(T0), "m1", 30, T0 + 1, (), SPANS, held)
    assert made.credit.review_reason == "min_click_to_order_s"


def test_review_does_not_judge_a_click_on_another_merchants_link() -> None:
    """Found in review: bob's click on m2's link and bob's code on an m1 order credited him by code, and
    the click (m2's) held his m1 credit, its time and IP count shown in m1's trace."""
    held = Policy(0, "code", ReviewRules(min_click_to_order_s=3600, max_clicks_per_ip_hour=1))
    on_m2 = msgspec.structs.replace(_click(T0, ip_clicks=9), merchant_id="m2", creator_id="bob")
    made = decision.decide(on_m2, "m1", 30, T0 + 1, ("bob10",), SPANS, held)
    assert made.credit.creator_id == "bob" and made.credit.attributed_by == "code"
    assert made.credit.review_reason == ""
    assert [(c.rule, c.observed, c.tripped) for c in made.review] == [
        ("min_click_to_order_s", None, False),
        ("max_clicks_per_ip_hour", None, False),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"attribution_priority": "CLICK"}, "attribution_priority"),
        ({"attribution_priority": None}, "attribution_priority"),
        ({"review": {"min_click_to_order_s": -1}}, "review.min_click_to_order_s"),
        (
            {"review": {"max_clicks_per_ip_hour": policy.MAX_CLICKS_PER_IP_HOUR + 1}},
            "review.max_clicks_per_ip_hour",
        ),
        ({"review": {"min_click_to_order_s": True}}, "review"),
        ({"review": {"min_click_to_order_s": 1.5}}, "review"),
        ({"review": {"other": 1}}, "review"),
        ({"review": []}, "review"),
        ({"name": "x"}, "name"),
        ({"currencies": None}, "currencies"),
        ({"currencies": []}, "currencies"),
        ({"currencies": ["EUR", "EUR"]}, "currencies"),
        ({"currencies": ["eur"]}, "currencies"),
        ({"currencies": ["EUR\n"]}, "currencies"),
        ({"currencies": "EUR"}, "currencies"),
        ({}, "body"),
        ([], "body"),
    ],
)
def test_patch_refuses_with_the_field(body, field) -> None:
    with pytest.raises(policy.InvalidField) as caught:
        policy.checked_patch(body)
    assert caught.value.field == field


def test_patch_accepts_settable_fields() -> None:
    assert policy.checked_patch(
        {"attribution_priority": "code", "review": {"max_clicks_per_ip_hour": 3}}
    ) == {
        "attribution_priority": "code",
        "review": ReviewRules(0, 3),
    }
    assert policy.checked_patch({"currencies": ["EUR", "USD"]}) == {"currencies": ["EUR", "USD"]}


@pytest.mark.parametrize(
    ("history", "at_ms", "expected"),
    [
        ([], T0, "click"),
        ([Policy(T0, "code")], T0 - 1, "code"),  # before the first version: the first
        ([Policy(0), Policy(T0, "code")], T0 - 1, "click"),
        ([Policy(0), Policy(T0, "code")], T0, "code"),
    ],
)
def test_policy_in_effect(history, at_ms, expected) -> None:
    assert policy.policy_at(history, at_ms).attribution_priority == expected


def test_policy_history_appends_only_changes_and_never_goes_back_in_time() -> None:
    history = [Policy(T0)]
    assert policy.next_policies(history, Policy(0), T0 + 5) == history
    changed = policy.next_policies(history, Policy(0, "code"), T0 - 5)
    assert changed == [Policy(T0), Policy(T0, "code")]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (action, creator, rate, at) → spans (creator, from, to)
        ([("put", "a", None, 10)], [("a", 10, 0)]),
        ([("put", "a", None, 10), ("put", "a", None, 20)], [("a", 10, 0)]),  # same assignment
        ([("put", "a", None, 10), ("put", "a", 300, 20)], [("a", 10, 20), ("a", 20, 0)]),  # new rate
        ([("put", "a", None, 10), ("put", "b", None, 20)], [("a", 10, 20), ("b", 20, 0)]),
        ([("put", "a", None, 10), ("del", "", None, 15)], [("a", 10, 15)]),
        (
            [("put", "a", None, 10), ("del", "", None, 15), ("put", "b", None, 12)],
            [("a", 10, 15), ("b", 15, 0)],
        ),
    ],
)
def test_span_history(steps, expected) -> None:
    spans: list[Span] = []
    for action, creator, rate, at in steps:
        if action == "put":
            spans = codes.put_spans(spans, "X1", creator, rate, at)
        else:
            spans = codes.delete_spans(spans, at) or spans
    assert [(s.creator_id, s.from_ms, s.to_ms) for s in spans] == expected
    assert codes.delete_spans([Span("X1", "a", 1, 2)], 5) is None  # not active: nothing to remove


def test_a_merchant_stored_before_these_fields_reads_with_defaults() -> None:
    import msgspec

    from attribution.merchants import Merchant, policy_snapshot

    old = b'{"merchant_id":"m1","name":"m1","domains":["m1.example"],"currency":"EUR","default_rate_bps":800}'
    merchant = msgspec.json.decode(old, type=Merchant)
    assert (merchant.attribution_priority, merchant.review) == ("click", ReviewRules(0, 0))
    assert policy_snapshot(merchant).at(T0) == Policy(0)
    assert not policy_snapshot(merchant).counts_ip_clicks


def test_the_class_of_letters_that_upper_case_into_ascii_is_found() -> None:
    assert {"ſ", "ı", "ﬀ", "ﬅ", "ß"} <= set(FOLDING)


# Each in an order code that would otherwise be a stored one.
@pytest.mark.parametrize("char", FOLDING)
def test_a_non_ascii_letter_never_matches_a_stored_code(char: str) -> None:
    sent = f"x{char}10"
    stored = codes.normalise(sent.upper())  # what `sent` would have matched through Unicode's upper case
    assert codes.normalise(sent) != stored
    assert (
        codes.check_order_codes([sent], {stored: [Span(stored, "mallory", 0, 0)]}, T0)[0].status == "unknown"
    )


@pytest.mark.parametrize(
    ("sent", "normalised"),
    [("alice10", "ALICE10"), ("Bob_1-x", "BOB_1-X"), ("ALICE10", "ALICE10"), ("é10", "é10"), ("aé", "Aé")],
)
def test_ascii_letters_match_in_either_case(sent: str, normalised: str) -> None:
    assert codes.normalise(sent) == normalised
