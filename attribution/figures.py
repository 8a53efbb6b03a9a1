"""The answers of the dashboard's figures as JSON: `GET /api/creators/{id}/clicks` and `/orders` (api.py),
`GET /api/merchants/{id}/clicks`, `/creators` and `/orders` (merchant_api.py). Each answer is a msgspec
struct here: the handlers answer with it and the OpenAPI document (redirector/apischemas.py) is built from
it, so what is documented and what is sent cannot drift apart. The bounds (`Meta`) are the limits of the
code that fills them (audience.py, the handlers' `limit`), for the readers of the document."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Annotated

import msgspec
from msgspec import Meta, Struct, field
from starlette.responses import Response

from attribution import audience, report
from core.errors import ApiError, error_response

log = logging.getLogger(__name__)
# While ClickHouse is down a client should come back in a few seconds, not hammer it.
CLICKHOUSE_RETRY_AFTER_S = 5

# The `limit` query parameter of the merchant lists (GET /api/merchants/{id}/creators and /orders).
MAX_LIST = 200
# Orders listed by GET /api/creators/{id}/orders (the latest by booking, each with all its ledger rows).
CREATOR_ORDERS_SHOWN = 50

MinorUnits = Annotated[int, Meta(description="minor units of the currency")]
Days = Annotated[list["DayClicks"], Meta(min_length=1, max_length=audience.MAX_DAYS)]
Top = Annotated[list["NamedClicks"], Meta(max_length=audience.TOP_ROWS + 1)]


class DayClicks(Struct):
    """One day of the series (every day of the range is there, zeros included)."""

    day: date
    human: int
    bots: int


class NamedClicks(Struct):
    """Human clicks of one country or device class; the rest of the top ones summed as "other"."""

    name: str
    human: int


class CreatorClicks(Struct):
    creator_id: str
    first: date
    last: date
    human: int
    bots: int
    days: Days
    countries: Top
    devices: Top


class MerchantClicks(Struct):
    merchant_id: str
    first: date = field(name="from")
    last: date = field(name="to")
    human: int
    bots: int
    days: Days


class LedgerRow(Struct):
    """One row of the commission ledger (attribution/ledger.py) with why it is what it is, in words."""

    entry_id: str
    kind: str
    status: str
    amount_minor: MinorUnits
    currency: str
    sku: str
    quantity: int
    basis_minor: MinorUnits
    rate_bps: int
    rate_rule: str
    rate_version: int
    reason: str
    explanation: str


class CreatorOrder(Struct):
    merchant_id: str
    order_id: str
    rows: list[LedgerRow]


class CreatorOrders(Struct):
    creator_id: str
    first: date = field(name="from")
    orders: Annotated[list[CreatorOrder], Meta(max_length=CREATOR_ORDERS_SHOWN)]


class CreatorSales(Struct):
    creator_id: str
    currency: str
    orders: int
    net_minor: MinorUnits


class MerchantCreators(Struct):
    merchant_id: str
    first: date = field(name="from")
    last: date = field(name="to")
    creators: Annotated[list[CreatorSales], Meta(max_length=MAX_LIST)]


class Commission(Struct):
    """An order's net commission for one creator, currency and ledger status (non-zero only)."""

    creator_id: str
    currency: str
    status: str
    amount_minor: MinorUnits


class MerchantOrder(Struct):
    order_id: str
    events: int
    last_event_at: Annotated[str, Meta(description="ISO 8601 UTC, milliseconds")]
    commissions: list[Commission]


class MerchantOrders(Struct):
    merchant_id: str
    orders: Annotated[list[MerchantOrder], Meta(max_length=MAX_LIST)]


ANSWERS = (CreatorClicks, CreatorOrders, MerchantClicks, MerchantCreators, MerchantOrders)


def clicks_range(params: Mapping[str, str], today: date) -> tuple[date, date]:
    """`from`..`to` of a clicks answer (creator's or merchant's): the last DEFAULT_DAYS days by default,
    at most MAX_DAYS; a 400 `bad_date` naming the problem otherwise."""
    default_from = str(today - timedelta(days=audience.DEFAULT_DAYS - 1))
    try:
        first, last = report.day_range(params.get("from", default_from), params.get("to"), today)
    except report.BadRange as exc:
        raise ApiError(400, "bad_date", str(exc)) from None
    if (last - first).days >= audience.MAX_DAYS:
        raise ApiError(400, "bad_date", f"a range of at most {audience.MAX_DAYS} days")
    return first, last


def unavailable(what: str, exc: Exception) -> Response:
    """The 503 of a figure read from ClickHouse while it cannot be reached (logged, with a Retry-After)."""
    log.warning("%s unavailable: %s", what, exc)
    return error_response(
        503,
        "clickhouse_unavailable",
        f"{what} are read from ClickHouse, which cannot be reached now; retry later",
        {"retry-after": str(CLICKHOUSE_RETRY_AFTER_S)},
    )


def answer(kind: type[Struct], body: dict) -> Response:
    """The handler's answer, converted to its documented struct on the way out: an answer that no longer
    fits its schema fails loudly in the tests instead of reaching a client undocumented."""
    return Response(msgspec.json.encode(msgspec.convert(body, kind)), media_type="application/json")
