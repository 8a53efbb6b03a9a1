"""The dashboard's JSON answers (attribution/figures.py): what the handlers build fits the structs the
OpenAPI document is made from, the field names are the API's (`from`, `to`), and a body that drifted from
its struct is refused rather than sent undocumented."""

from __future__ import annotations

from datetime import date

import msgspec
import orjson
import pytest

from attribution import audience, figures

DAY = {"day": "2026-11-30", "human": 3, "bots": 1}
ORDER = {
    "order_id": "A-1",
    "events": 2,
    "last_event_at": "2026-11-30T10:00:00.000Z",
    "commissions": [{"creator_id": "alice", "currency": "EUR", "status": "pending", "amount_minor": 1198}],
}
LEDGER_ROW = {
    "entry_id": "e1",
    "kind": "commission",
    "status": "pending",
    "amount_minor": 800,
    "currency": "EUR",
    "sku": "S-1",
    "quantity": 1,
    "basis_minor": 10000,
    "rate_bps": 800,
    "rate_rule": "default",
    "rate_version": 1,
    "reason": "",
    "explanation": "Commission for 1 × S-1.",
}
SEEN = audience.Audience(
    "alice", date(2026, 11, 30), date(2026, 11, 30), [("2026-11-30", 3, 1)], [("FR", 3)], [("mobile", 3)]
)

BODIES = [
    (figures.CreatorClicks, SEEN.as_dict()),
    (
        figures.CreatorOrders,
        {
            "creator_id": "alice",
            "from": "2026-11-01",
            "orders": [{"merchant_id": "m", "order_id": "A-1", "rows": [LEDGER_ROW]}],
        },
    ),
    (
        figures.MerchantClicks,
        {"merchant_id": "m", "from": "2026-11-30", "to": "2026-11-30", "human": 3, "bots": 1, "days": [DAY]},
    ),
    (
        figures.MerchantCreators,
        {
            "merchant_id": "m",
            "from": "2026-11-01",
            "to": "2026-11-30",
            "creators": [{"creator_id": "alice", "currency": "EUR", "orders": 1, "net_minor": 1198}],
        },
    ),
    (figures.MerchantOrders, {"merchant_id": "m", "orders": [ORDER]}),
]


@pytest.mark.parametrize(("kind", "body"), BODIES, ids=lambda v: getattr(v, "__name__", ""))
def test_the_handlers_bodies_are_sent_as_they_are(kind, body) -> None:
    assert orjson.loads(figures.answer(kind, body).body) == orjson.loads(orjson.dumps(body))


@pytest.mark.parametrize(("kind", "body"), BODIES, ids=lambda v: getattr(v, "__name__", ""))
def test_a_body_without_a_documented_field_is_refused(kind, body) -> None:
    for name in body:
        with pytest.raises(msgspec.ValidationError):
            figures.answer(kind, {k: v for k, v in body.items() if k != name})


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (figures.MerchantClicks, {**BODIES[2][1], "from": "30/11/2026"}),
        (figures.MerchantClicks, {**BODIES[2][1], "human": "3"}),
        (figures.MerchantClicks, {**BODIES[2][1], "days": []}),
        (figures.MerchantClicks, {**BODIES[2][1], "days": [DAY] * (audience.MAX_DAYS + 1)}),
        (figures.MerchantOrders, {"merchant_id": "m", "orders": [ORDER] * (figures.MAX_LIST + 1)}),
        (figures.MerchantOrders, {"merchant_id": "m", "orders": [{**ORDER, "events": 1.5}]}),
        (figures.CreatorClicks, {**SEEN.as_dict(), "countries": [{"name": "FR"}]}),
    ],
)
def test_a_body_outside_its_schema_is_refused(kind, body) -> None:
    with pytest.raises(msgspec.ValidationError):
        figures.answer(kind, body)
