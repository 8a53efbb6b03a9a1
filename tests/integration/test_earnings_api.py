"""`GET /api/creators/{id}/earnings` through HTTP: refused day ranges (400, before any query), ClickHouse
unreachable (a JSON 503 with Retry-After, never a text/plain 500), and sums that Int64 cannot hold (refused,
never shown negative), against the real Redis and ClickHouse 18.16."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from core.migrate import migrate
from tests.conftest import free_port
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.attributionhelp import add_merchant

URL = "/api/creators/alice/earnings"
DAY_S = 86_400
T0_S = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())


BAD_RANGES = [
    "from=0001-01-01",
    "from=1969-12-31",
    "to=9999-12-31",
    "to=2106-01-01",
    "from=2026-02-01&to=2026-01-31",  # reversed
    "from=2026-13-01",
    "from=2026-02-30",
    "from=2026-01-01xyz",  # used to be cut to its first ten characters
    "to=2026-01-31T00:00:00",
    "from=20260101",
    "from=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01",  # full-width digits
    "from=2026-01-01%0A",
    "from=x&to=%ff",
]


@pytest.mark.redis
def test_day_ranges_clickhouse_would_misread_are_refused(settings, redis_client) -> None:
    """Each member of the class, through one app (refused before any query: no ClickHouse needed)."""

    async def scenario():
        async with running_app(settings) as (_, client):
            for query in BAD_RANGES:
                response = await client.get(f"{URL}?{query}", headers=ADMIN)
                assert response.status_code == 400, (query, response.text)
                assert response.headers["content-type"] == "application/json"
                assert response.json()["error"]["code"] == "bad_date", query

    asyncio.run(scenario())


# Every JSON route answering figures read from ClickHouse, and the word its 503 names.
FIGURE_ROUTES = [
    ("/api/creators/alice/earnings", "earnings"),
    ("/api/creators/alice/clicks", "clicks"),
    ("/api/creators/alice/orders", "orders"),
    ("/api/merchants/m1/clicks", "clicks"),
    ("/api/merchants/m1/creators", "sales"),
    ("/api/merchants/m1/orders", "orders"),
    ("/api/merchants/m1/orders/O-1/trace", "orders"),
]


@pytest.mark.redis
def test_every_figure_route_is_one_json_503_naming_what_it_reads(settings, redis_client) -> None:
    """One helper (figures.unavailable) for the class: code, Retry-After, and a message naming the figure
    asked for (the merchant's clicks once said "orders are read from ClickHouse")."""
    closed = f"clickhouse://default:@127.0.0.1:{free_port()}/clicktrail"
    down = settings.model_copy(update={"clickhouse_url": closed})

    async def scenario():
        async with running_app(down) as (app, client):
            await add_merchant(app.ctx.redis, app.ctx.keys, "m1", ["shop.example.com"], 1)
            for url, what in FIGURE_ROUTES:
                response = await client.get(url, headers=ADMIN)
                assert response.status_code == 503, (url, response.text)
                assert response.headers["retry-after"].isdigit(), url
                error = response.json()["error"]
                assert error["code"] == "clickhouse_unavailable", url
                assert error["message"].startswith(f"{what} are read from ClickHouse"), (url, error)

    asyncio.run(scenario())


@pytest.mark.redis
def test_clickhouse_unreachable_is_a_json_503(settings, redis_client) -> None:
    closed = f"clickhouse://default:@127.0.0.1:{free_port()}/clicktrail"  # nothing listens there
    down = settings.model_copy(update={"clickhouse_url": closed})

    async def scenario():
        async with running_app(down) as (_, client):
            for query in ("", "?from=2026-01-01&to=2026-01-31"):
                response = await client.get(URL + query, headers=ADMIN)
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/json"
                assert response.headers["retry-after"].isdigit()
                assert response.json()["error"]["code"] == "clickhouse_unavailable"
            # bad input is still told apart from the outage
            assert (await client.get(URL + "?from=2026-13-01", headers=ADMIN)).status_code == 400

    asyncio.run(scenario())


LEDGER = ("merchant_id", "order_id", "entry_id", "kind", "status", "amount_minor", "orders", "currency")
LEDGER_TIME = ("creator_id", "effective_at", "effective_ms", "booked_ms")


def _book(clickhouse, rows: list[tuple[int, str, int]]) -> None:
    """(day index, currency, amount) per ledger row, straight into ClickHouse, as data from before the
    money bounds (or an import) could be."""
    data = [
        ("m1", f"O-{n}", "acc:0", "accrual", "pending", amount, 1, currency, "alice", T0_S + day * DAY_S)
        for n, (day, currency, amount) in enumerate(rows)
    ]
    data = [(*r[:9], r[9], r[9] * 1000, r[9] * 1000) for r in data]
    clickhouse.insert("commissions", LEDGER + LEDGER_TIME, [list(c) for c in zip(*data, strict=True)])


@pytest.mark.redis
@pytest.mark.clickhouse
def test_sums_past_int64_are_refused_not_shown_negative(settings, redis_client, clickhouse) -> None:
    migrate(clickhouse, log=lambda *_: None)
    big = 4 * 10**18  # each row (and each day of the rollup) fits Int64; three of them do not
    _book(clickhouse, [(0, "EUR", big), (1, "EUR", big), (2, "EUR", big), (0, "USD", 10**13), (1, "USD", 5)])

    async def scenario():
        async with running_app(settings) as (_, client):
            wide = await client.get(URL + "?from=2026-11-01&to=2026-11-30", headers=ADMIN)
            assert wide.status_code == 422, wide.text
            assert wide.json()["error"]["code"] == "sum_out_of_range"
            # one day of it is exact, and the other currency is unaffected
            one_day = await client.get(URL + "?from=2026-11-02&to=2026-11-02", headers=ADMIN)
            assert one_day.status_code == 200, one_day.text
            by_currency = {c["currency"]: c["pending_minor"] for c in one_day.json()["currencies"]}
            assert by_currency == {"EUR": big, "USD": 5}

    asyncio.run(scenario())
