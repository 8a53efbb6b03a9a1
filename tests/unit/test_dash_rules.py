"""The dashboard's pure rules, table-driven: a ledger row told in words, the audience's daily series and
top lists, where sign-in may send a user back to, and the CSRF token comparison."""

from __future__ import annotations

from datetime import date

import pytest

from attribution import audience, explain
from core.rows import CommissionRow
from redirector.dash import csrf
from redirector.dash.signin import _next_path


def row(**fields) -> CommissionRow:
    base = dict.fromkeys(CommissionRow.__struct_fields__, "")
    base.update({name: 0 for name, kind in CommissionRow.__annotations__.items() if kind == "int"})
    base.update(fields)
    return CommissionRow(**base)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        (
            {"kind": "accrual", "sku": "S-1", "quantity": 2, "basis_minor": 10_000, "rate_bps": 800,
             "currency": "EUR", "rate_rule": "default", "rate_version": 1},
            "Commission for 2 × S-1 at 8 % of 100.00 EUR (default rate, version 1).",
        ),
        (
            {"kind": "accrual", "sku": "K", "quantity": 1, "basis_minor": 1_500, "rate_bps": 1_250,
             "currency": "JPY", "rate_rule": "sku", "rate_version": 3},
            "Commission for 1 × K at 12.5 % of 1,500 JPY (sku rate, version 3).",
        ),
        (
            {"kind": "accrual", "sku": "B", "quantity": 1, "basis_minor": 1_000, "rate_bps": 5,
             "currency": "BHD", "rate_rule": "creator", "rate_version": 2, "attributed_by": "code",
             "code": "ALICE10"},
            "Commission for 1 × B at 0.05 % of 1.000 BHD (creator rate, version 2) credited through discount "
            "code ALICE10.",
        ),
        ({"kind": "none", "reason": "expired"},
         "No commission: the order came after the attribution window closed."),
        ({"kind": "none", "reason": "bot"}, "No commission: the click came from a bot."),
        ({"kind": "none", "reason": "some_new_reason"}, "No commission: some new reason."),
        ({"kind": "none"}, "No commission."),
        ({"kind": "flag", "reason": "currency_mismatch"},
         "Flag: a refund or cancel came in another currency than its order and was not applied."),
        ({"kind": "reversal", "sku": "S", "quantity": 1, "basis_minor": -500, "rate_bps": 1000,
          "currency": "EUR", "rate_rule": "default", "rate_version": 1},
         "Reversal for 1 × S at 10 % of -5.00 EUR (default rate, version 1)."),
        ({"kind": "approval", "sku": "S", "quantity": 1}, "Approval transfer for 1 × S."),
        ({"kind": "review", "reason": "rejected", "sku": "S", "quantity": 1},
         "Review for 1 × S: the merchant rejected the order in review."),
        ({"kind": "mystery"}, "Mystery."),
    ],
)  # fmt: skip
def test_a_ledger_row_in_words(fields: dict, text: str) -> None:
    assert explain.sentence(row(**fields)) == text


@pytest.mark.parametrize(
    ("bps", "shown"),
    [(0, "0 %"), (1, "0.01 %"), (10, "0.1 %"), (800, "8 %"), (1_250, "12.5 %"), (10_000, "100 %")],
)
def test_percent_of_basis_points(bps: int, shown: str) -> None:
    assert explain.percent(bps) == shown


def test_every_day_of_the_range_has_a_row() -> None:
    rows = [("2026-03-01", 5, 1), ("2026-03-03", 2, 0)]
    assert audience.every_day(rows, date(2026, 2, 28), date(2026, 3, 3)) == [
        ("2026-02-28", 0, 0),
        ("2026-03-01", 5, 1),
        ("2026-03-02", 0, 0),
        ("2026-03-03", 2, 0),
    ]
    assert audience.every_day([], date(2026, 3, 1), date(2026, 3, 1)) == [("2026-03-01", 0, 0)]


@pytest.mark.parametrize(
    ("counts", "limit", "expected"),
    [
        ({}, 3, []),
        ({"FR": 3, "DE": 5}, 3, [("DE", 5), ("FR", 3)]),
        ({"b": 2, "a": 2, "c": 2}, 2, [("a", 2), ("b", 2), ("other", 2)]),  # ties by name, rest summed
        ({"": 4, "unknown": 1, "FR": 2}, 3, [("unknown", 5), ("FR", 2)]),  # '' is "unknown"
        ({"FR": 0, "DE": -2, "IT": 1}, 3, [("IT", 1)]),  # an unmerged rollup can dip below zero
        ({"x": 10**18, "y": 10**18}, 1, [("x", 10**18), ("other", 10**18)]),
    ],
)
def test_top_rows(counts: dict, limit: int, expected: list) -> None:
    assert audience.top(counts, limit) == expected


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("/dash/admin/keys", "/dash/admin/keys"),
        ("/dash/creators/a?days=7", "/dash/creators/a?days=7"),
        (None, None),
        ("", None),
        ("//evil.example/dash", None),
        ("https://evil.example/dash", None),
        ("/dash\\@evil.example", None),
        ("/api/keys", None),
        ("/dashboard-elsewhere", None),
        ("/dash", "/dash"),
        ("javascript:alert(1)", None),
    ],
)
def test_sign_in_returns_only_to_a_dashboard_path(value, kept) -> None:
    assert _next_path(value) == kept


@pytest.mark.parametrize(
    ("expected", "given", "ok"),
    [("tok", "tok", True), ("tok", "tok2", False), ("tok", "", False), ("tok", None, False),
     ("", "", False), (None, None, False), ("tøk", "tøk", True)],
)  # fmt: skip
def test_csrf_tokens_match_only_when_equal_and_present(expected, given, ok) -> None:
    assert csrf.matches(expected, given) is ok
