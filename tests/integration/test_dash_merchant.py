"""A merchant's dashboard pages through HTTP (the in-process app, real Redis and ClickHouse 18.16): the
figures equal what ClickHouse holds, a merchant sees only its own merchant and a creator none, every form
goes through the API's checks (bad input: the page again with the reason, nothing written), and a form
without its CSRF token is refused with nothing written."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from attribution.attributor import Attributor
from attribution.codes import CodeStore
from core import queries
from core.clickid import ClickIds
from core.keys import Keys
from core.migrate import migrate
from redirector.dash.merchant_forms import CODES_SHOWN
from tests.integration.apphelp import running_app
from tests.integration.attributionhelp import ingest_orders
from tests.integration.dashhelp import csrf_token, post_form, sign_in
from tests.integration.dochelp import assert_documented
from tests.integration.merchantdash import setup, signed

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

BRAND = "/dash/merchants/brand"
PAGES = ("", "/catalog", "/orders", "/deliveries", "/codes", "/secret")


LIMITS = ["?limit=0", "?limit=201", "?limit=x", "?limit=-1", "?limit=%EF%BC%91", "?limit=" + "1" * 5000]
RANGES = ["?from=2026-13-01", "?from=2026-02-01&to=2026-01-31", "?to=9999-12-31", "?from=20260101"]
BAD_QUERIES = {"creators": LIMITS + RANGES, "orders": LIMITS, "clicks": [*RANGES, "?from=2020-01-01"]}


def test_pages_show_what_clickhouse_holds(settings, clickhouse, redis_client) -> None:
    """A code assigned in the form credits an order; the overview's ranking, the orders page and the
    order's trace show the ledger ClickHouse holds; the deliveries page shows a refusal's reason."""
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (app, client):
            made = await setup(client)
            assert (await sign_in(client, made["brand"])).headers["location"] == BRAND
            assigned = await post_form(
                client, f"{BRAND}/codes", f"{BRAND}/codes", {"code": "ALICE10", "creator_id": "alice"}
            )
            assert assigned.status_code == 200 and "Code ALICE10 now credits alice" in assigned.text
            body, headers = signed(made["brand_secret"], "msg-1", "A-1", ["alice10"])
            assert (
                await client.post("/webhooks/orders/brand", content=body, headers=headers)
            ).status_code == 202
            headers["webhook-signature"] = "v1,AAAA"
            headers["webhook-id"] = "msg-forged"
            assert (
                await client.post("/webhooks/orders/brand", content=body, headers=headers)
            ).status_code == 401

            keys = Keys.of(settings)
            await asyncio.to_thread(ingest_orders, settings.redis_url, keys, clickhouse)
            ctx = app.ctx
            await Attributor(ctx.redis, keys, clickhouse, ClickIds(settings.secret_bytes)).run_once()

            today = datetime.now(UTC).date()
            held = queries.merchant_creators(clickhouse, "brand", today - timedelta(days=29), today)
            assert held == [("alice", "EUR", 1, 1198, 1198.0)]  # 5990 x 2 x 10 %
            overview = await client.get(BRAND)
            assert overview.status_code == 200
            assert re.search(r'<th scope="row">alice</th><td>EUR</td><td class="num">1</td>'
                             r'<td class="num">11.98 EUR</td>', overview.text)  # fmt: skip
            assert 'role="img"' in overview.text and "alice (EUR) 1" in overview.text

            api = {"authorization": f"Bearer {made['brand']}"}
            for route, query in (("creators", "?from=2026-01-01"), ("orders", ""), ("clicks", "")):
                answer = await client.get(f"/api/merchants/brand/{route}{query}", headers=api)
                assert answer.status_code == 200, (route, answer.text)
                assert_documented(answer, "GET", "/api/merchants/{merchant_id}/" + route)
            ranked = (await client.get("/api/merchants/brand/creators?from=2026-01-01", headers=api)).json()
            assert ranked["creators"] == [
                {"creator_id": "alice", "currency": "EUR", "orders": 1, "net_minor": 1198}
            ]
            orders = (await client.get("/api/merchants/brand/orders", headers=api)).json()["orders"]
            assert [(o["order_id"], o["events"], o["commissions"]) for o in orders] == [
                (
                    "A-1",
                    1,
                    [{"creator_id": "alice", "currency": "EUR", "status": "pending", "amount_minor": 1198}],
                )
            ]
            clicks = (await client.get("/api/merchants/brand/clicks", headers=api)).json()
            assert len(clicks["days"]) == 30 and clicks["human"] == clicks["bots"] == 0
            for url in (
                "/api/merchants/brand/creators",
                "/api/merchants/brand/orders",
                "/api/merchants/brand/clicks",
            ):
                for key in (made["other"], made["alice"]):
                    refused = await client.get(url, headers={"authorization": f"Bearer {key}"})
                    assert refused.status_code == 403, (url, refused.text)
                    assert_documented(refused, "GET", url.replace("brand", "{merchant_id}"))
                for bad in BAD_QUERIES[url.rsplit("/", 1)[1]]:
                    refused = await client.get(url + bad, headers=api)
                    assert refused.status_code == 400, (url, bad)
                    # the code the creator routes and earnings give for the same from/to
                    assert refused.json()["error"]["code"] == ("bad_query" if "limit" in bad else "bad_date")
                    assert_documented(refused, "GET", url.replace("brand", "{merchant_id}"))

            listed = await client.get(f"{BRAND}/orders")
            assert f'href="{BRAND}/orders/A-1"' in listed.text and "alice: 11.98 EUR pending" in listed.text
            trace = await client.get(f"{BRAND}/orders/A-1")
            assert trace.status_code == 200 and '<strong id="outcome">credited</strong>' in trace.text
            assert "alice10: active, alice (credited)" in trace.text and "11.98 EUR" in trace.text
            assert (await client.get(f"{BRAND}/orders/NOPE")).status_code == 404

            deliveries = await client.get(f"{BRAND}/deliveries")
            assert "msg-forged" in deliveries.text and "msg-1" in deliveries.text
            refused = await client.get(f"{BRAND}/deliveries?result=refused")
            assert "msg-forged" in refused.text and "msg-1" not in refused.text
            assert (await client.get(f"{BRAND}/deliveries?result=x")).status_code == 400

    asyncio.run(scenario())


def test_scoping_like_the_api(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (_, client):
            made = await setup(client)
            await sign_in(client, made["other"])
            for page in PAGES:
                shown = await client.get(BRAND + page)
                assert shown.status_code == 403, (page, shown.status_code)
                assert "Brand" not in shown.text
            assert (await client.get("/dash/merchants/other/catalog")).status_code == 200
            for action, data in (("/codes", {"code": "XX1", "creator_id": "bob"}), ("/secret", {})):
                token = csrf_token((await client.get("/dash/merchants/other")).text)
                refused = await client.post(BRAND + action, data={"csrf_token": token, **data})
                assert refused.status_code == 403
            assert not redis_client.keys(Keys.of(settings).prefix + "*code*brand*")

            client.cookies.clear()
            await sign_in(client, made["alice"])
            for page in PAGES:
                assert (await client.get(BRAND + page)).status_code == 403, page

            client.cookies.clear()
            await sign_in(client, "admin-test-token")
            for page in PAGES:
                assert (await client.get(BRAND + page)).status_code == 200, page
            assert (await client.get("/dash/merchants/nobody")).status_code == 404
            assert (await client.get("/dash/merchants/bad%20id")).status_code == 404

    asyncio.run(scenario())


def snapshot(redis_client, settings) -> dict:
    """Every Redis key of the test but the dashboard's sessions, with its whole value (DUMP)."""
    return {
        key: redis_client.dump(key)
        for key in redis_client.scan_iter(match=settings.redis_prefix + "*")
        if b":dash:" not in key
    }


FORM_TYPE = {"content-type": "application/x-www-form-urlencoded"}  # as a browser sends even an empty form
FORMS = {
    "/catalog": {
        "sku": "S-1",
        "title": "Shoe",
        "url": "https://shop.brand.example/s1",
        "price_minor": "5990",
        "currency": "EUR",
    },
    "/rates": {"default_rate_bps": "900", "categories": "shoes = 1200", "creators": ""},
    "/codes": {"code": "BOB10", "creator_id": "bob", "rate_bps": "500"},
    "/codes/remove": {"code": "BOB10"},
    "/secret": {},
}


def test_forms_without_their_csrf_token_write_nothing(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (_, client):
            made = await setup(client)
            await sign_in(client, made["brand"])
            await post_form(client, f"{BRAND}/codes", f"{BRAND}/codes", FORMS["/codes"])
            before = snapshot(redis_client, settings)
            for action, data in FORMS.items():
                for token in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}):
                    refused = await client.post(BRAND + action, data={**data, **token}, headers=FORM_TYPE)
                    assert refused.status_code == 403, (action, token, refused.status_code)
                    assert "security token" in refused.text
            assert snapshot(redis_client, settings) == before

    asyncio.run(scenario())


BAD_INPUT = [
    ("/catalog", {"price_minor": "59.90"}, "price_minor must be a whole number"),
    ("/catalog", {"price_minor": ""}, "price_minor must be a whole number"),
    ("/catalog", {"price_minor": "99999999999999999999"}, "price_minor"),
    ("/catalog", {"url": "javascript:alert(1)"}, "url must be http(s)"),
    ("/catalog", {"currency": "EURO"}, "currency must be an ISO 4217 code"),
    # Unicode's upper case would make these USD and IDR (validate.ascii_upper)
    ("/catalog", {"currency": "u\u017fd"}, "currency must be an ISO 4217 code"),
    ("/catalog", {"currency": "\u0131dr"}, "currency must be an ISO 4217 code"),
    ("/catalog", {"sku": ""}, "sku"),
    ("/catalog", {"sku": "S\x01"}, "no control chars"),
    ("/catalog", {"sku": "S" * 200}, "sku"),
    ("/catalog", {"rate_bps": "10001"}, "rate_bps"),
    ("/catalog", {"rate_bps": "-5"}, "rate_bps must be a whole number or empty"),
    ("/catalog", {"title": "x\x07y"}, "title"),
    ("/rates", {"default_rate_bps": "abc"}, "default_rate_bps must be a whole number"),
    ("/rates", {"default_rate_bps": "10001"}, "default_rate_bps must be 0-10000"),
    ("/rates", {"categories": "shoes 1200"}, "categories, line 1"),
    ("/rates", {"categories": "shoes = 20000"}, "rate for category 'shoes'"),
    ("/rates", {"creators": "not an id = 100"}, "is not a creator id"),
    ("/codes", {"code": "B"}, "Code not saved"),
    ("/codes", {"code": "<script>x</script>"}, "Code not saved"),
    ("/codes", {"creator_id": ""}, "creator_id must be"),
    ("/codes", {"creator_id": "a b"}, "creator_id must be"),
    ("/codes", {"rate_bps": "1.5"}, "rate_bps must be a whole number"),
    ("/codes", {"rate_bps": "20000"}, "rate_bps must be an integer 0-10000"),
    ("/codes/remove", {"code": "NOSUCH"}, "no active code NOSUCH"),
    ("/codes/remove", {"code": "x"}, "Code not removed"),
]


def test_bad_form_input_shows_the_page_with_the_reason(settings, clickhouse, redis_client) -> None:
    """Each bad field of each form: 422, the form's page with the reason (escaped), nothing written."""
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (_, client):
            made = await setup(client)
            await sign_in(client, made["brand"])
            before = snapshot(redis_client, settings)
            page_of = {
                "/catalog": "/catalog",
                "/rates": "/catalog",
                "/codes": "/codes",
                "/codes/remove": "/codes",
            }
            for action, bad, reason in BAD_INPUT:
                answer = await post_form(client, BRAND + page_of[action], BRAND + action, FORMS[action] | bad)
                assert answer.status_code == 422, (action, bad, answer.status_code)
                assert 'class="error" role="alert"' in answer.text, (action, bad)
                assert reason in html.unescape(answer.text), (action, bad)
                assert "<script>x" not in answer.text
                assert csrf_token(answer.text)  # the page again, its forms usable
            assert snapshot(redis_client, settings) == before

    asyncio.run(scenario())


def test_catalog_rates_codes_and_secret_forms_change_what_the_api_reads(settings, clickhouse, redis_client):
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (app, client):
            made = await setup(client)
            await sign_in(client, made["brand"])
            saved = await post_form(client, f"{BRAND}/catalog", f"{BRAND}/catalog", FORMS["/catalog"])
            assert saved.status_code == 200 and "Product S-1 saved" in saved.text
            api = {"authorization": f"Bearer {made['brand']}"}
            products = (await client.get("/api/catalog?merchant_id=brand", headers=api)).json()["products"]
            assert [(p["sku"], p["price_minor"], p["earn_rate_bps"]) for p in products] == [
                ("S-1", 5990, 1000)
            ]

            rates = await post_form(client, f"{BRAND}/catalog", f"{BRAND}/rates", FORMS["/rates"])
            assert rates.status_code == 200 and "Rates saved" in rates.text
            current = await app.ctx.rates.current_head("brand")
            assert (current.default_bps, current.categories) == (900, {"shoes": 1200})
            assert "shoes = 1200" in (await client.get(f"{BRAND}/catalog")).text  # the form shows them

            await post_form(client, f"{BRAND}/codes", f"{BRAND}/codes", FORMS["/codes"])
            listed = (await client.get("/api/merchants/brand/codes", headers=api)).json()["codes"]
            assert [(c["code"], c["creator_id"], c["rate_bps"], c["active"]) for c in listed] == [
                ("BOB10", "bob", 500, True)
            ]
            removed = await post_form(client, f"{BRAND}/codes", f"{BRAND}/codes/remove", {"code": "bob10"})
            assert removed.status_code == 200 and "Code BOB10 removed" in removed.text
            listed = (await client.get("/api/merchants/brand/codes", headers=api)).json()["codes"]
            assert not listed[0]["active"]

            store = CodeStore(app.ctx.redis, app.ctx.keys)
            for n in range(CODES_SHOWN + 4):
                await store.put("brand", f"C{n:03d}", "alice", None, 1_000 + n)
            first = await client.get(f"{BRAND}/codes")
            assert first.text.count('<th scope="row">') == CODES_SHOWN
            assert f"{CODES_SHOWN} of {CODES_SHOWN + 5} codes" in first.text  # BOB10 too
            after = re.search(r'href="\?after=([^"]+)">Next codes', first.text).group(1)
            rest = await client.get(f"{BRAND}/codes?after={after}")
            assert rest.text.count('<th scope="row">') == 5 and "Next codes" not in rest.text

            rotated = await post_form(client, f"{BRAND}/secret", f"{BRAND}/secret", {})
            secret = re.search(r'<code id="secret">(whsec_[^<]+)</code>', rotated.text).group(1)
            now_ms = int(datetime.now(UTC).timestamp() * 1000)
            assert secret in await app.ctx.merchants.active_secrets("brand", now_ms)
            assert secret not in (await client.get(f"{BRAND}/secret")).text  # shown once

    asyncio.run(scenario())


def test_period_and_empty_merchant(settings, clickhouse, redis_client) -> None:
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (_, client):
            made = await setup(client)
            await sign_in(client, made["brand"])
            for days in ("7", "30", "90"):
                shown = await client.get(f"{BRAND}?days={days}")
                assert shown.status_code == 200 and "No data for" in shown.text
            assert (await client.get(f"{BRAND}?days=8")).status_code == 400
            assert date.today()  # the chart's days end today (UTC)

    asyncio.run(scenario())


# Order ids no order can have: control characters (C0, DEL, the Unicode line separators) and over-long.
# ... and a payout's pseudo order (attribution/payouts.py ORDER_PREFIX): no order id of a merchant's
BAD_ORDER_IDS = ["A%00", "A%1F", "A%7F", "A%0A", "A%E2%80%A8", "A%E2%80%A9", "A" * 129, "payout:m1.abc"]


def test_a_bad_order_id_is_one_400_on_the_page_and_in_the_api(settings, clickhouse, redis_client) -> None:
    """One check (merchant_api.check_order_id) for the order page and the trace API: they agree."""
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (_, client):
            made = await setup(client)
            api = {"authorization": f"Bearer {made['brand']}"}
            await sign_in(client, made["brand"])
            for bad in BAD_ORDER_IDS:
                answer = await client.get(f"/api/merchants/brand/orders/{bad}/trace", headers=api)
                assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_order_id", bad
                page = await client.get(f"{BRAND}/orders/{bad}")
                assert page.status_code == 400 and "order_id must be 1-128 chars" in page.text, bad
            unknown = await client.get(f"{BRAND}/orders/NOPE")
            api_unknown = await client.get("/api/merchants/brand/orders/NOPE/trace", headers=api)
            assert unknown.status_code == api_unknown.status_code == 404

    asyncio.run(scenario())
