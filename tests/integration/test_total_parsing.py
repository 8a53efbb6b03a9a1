"""Every header, path parameter, query parameter and body field of every public endpoint is parsed
totally: hostile values get a 4xx JSON error with a reason (or, on the redirect, a clean 302), never a
500. Webhook refusals are counted by reason. The router's own 404/405 answers are JSON too, and a code
path answers 405 with `Allow: GET, HEAD` to any other method."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import orjson
import pytest

from attribution import webhooks
from core.migrate import migrate
from redirector.linkcheck import header_safe
from redirector.recorder import count_clicks
from tests.integration.apphelp import ADMIN, make_link, running_app

pytestmark = pytest.mark.redis

# Header values as raw bytes (Starlette reads them as latin-1): other scripts' digits, superscripts,
# huge and negative numbers, empty, NUL, bytes that are not UTF-8, very long, and near-numbers.
HOSTILE_HEADERS = [
    "١٢٣".encode(),  # Arabic-Indic digits: isdigit() and int() accept them
    "１２３".encode(),  # full-width digits
    b"\xb2",  # '²' in latin-1: isdigit() is true, int() raises
    b"\xb9\xb2\xb3",
    b"9" * 40,
    b"-1",
    b"",
    b"\x00",
    b"\xff\xfe\xfd",
    b"a" * 10_000,
    b"1e3",
    b" 12 ",
    b"0x10",
    b"12\n",
]
# Path and query values, percent-encoded as a client would send them.
HOSTILE_PARAMS = [
    "%00",
    "%ff%fe",
    "%C2%B2",
    "%D9%A1%D9%A2",
    "a" * 300,
    "%0a",
    "x%0d%0ay",
    "-1",
    "9" * 40,
    "%25",
    "..",
    "%2e%2e",
    "%E2%80%AE",
]
HOSTILE_STRINGS = ["c1\n", "c1\r\n", "\u0000", "\u00b2", "١٢٣", "x" * 5000, "", " ", "\ud7ff", "EUR\n"]
MERCHANT = {
    "merchant_id": "mtotal",
    "name": "Total Shop",
    "domains": ["total.example.com"],
    "currency": "EUR",
    "default_rate_bps": 800,
}


def assert_total(response) -> None:
    """Never a 5xx; an error is a JSON error with a code and a message."""
    assert response.status_code < 500, (response.request.method, response.request.url, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", response.headers
        error = response.json()["error"]
        assert error["code"] and error["message"]


def assert_json_error(response, *statuses: int) -> None:
    assert_total(response)
    assert response.status_code >= 400, (response.request.url, response.status_code)
    if statuses:
        assert response.status_code in statuses, (response.request.url, response.status_code, response.text)
    assert response.headers["content-type"] == "application/json", response.headers
    error = response.json()["error"]
    assert error["code"] and error["message"]


def test_hostile_headers_on_the_management_api(settings) -> None:
    # Each hostile token is a wrong admin-token attempt: past the guessing limit they would get 429
    # (test_auth_throttle.py); here every one must reach the token check.
    settings.auth_max_failures = 1_000_000

    async def scenario():
        async with running_app(settings) as (_, client):
            for value in HOSTILE_HEADERS:
                for auth in (value, b"Bearer " + value, b"bearer ctk_" + value):
                    headers = {"authorization": auth}
                    assert_json_error(await client.get("/api/links?creator_id=c1", headers=headers), 401)
                    assert_json_error(await client.post("/api/links", json={}, headers=headers), 401)
                    assert_json_error(await client.get("/api/catalog", headers=headers), 401)
                length = {**ADMIN, "content-length": value}
                body = b'{"url": "https://a.example/", "creator_id": "c1"}'
                assert_json_error(await client.post("/api/links", content=body, headers=length), 400, 413)
                assert_json_error(await client.post("/api/merchants", content=body, headers=length), 400, 413)

    asyncio.run(scenario())


def test_hostile_path_query_and_body_values(settings) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            assert (await client.post("/api/merchants", json=MERCHANT, headers=ADMIN)).status_code == 201
            for value in HOSTILE_PARAMS:
                calls = [
                    client.get(f"/api/links/{value}", headers=ADMIN),
                    client.delete(f"/api/links/{value}", headers=ADMIN),
                    client.get(f"/api/links?creator_id={value}", headers=ADMIN),
                    client.post(f"/api/merchants/{value}/secrets", headers=ADMIN),
                    client.put(f"/api/merchants/{value}/catalog", json=[], headers=ADMIN),
                    client.put(f"/api/merchants/{value}/rates", json={}, headers=ADMIN),
                    client.post(f"/webhooks/orders/{value}", content=b"{}"),
                ]
                for call in calls:
                    assert_total(await call)  # "-1" and "9" * 40 are valid ids: a 200 is fine
                catalog = await client.get(
                    f"/api/catalog?merchant_id={value}&q={value}&category={value}&creator_id={value}",
                    headers=ADMIN,
                )
                assert_total(catalog)
            for text in HOSTILE_STRINGS:
                for field in ("url", "creator_id", "code"):
                    body = {"url": "https://a.example/", "creator_id": "c1", field: text}
                    response = await client.post("/api/links", json=body, headers=ADMIN)
                    assert_json_error(response, 422)
                for field in ("merchant_id", "currency", "click_param"):
                    body = {**MERCHANT, "merchant_id": "m2", "domains": ["m2.example"], field: text}
                    assert_json_error(await client.post("/api/merchants", json=body, headers=ADMIN), 422)
                assert_json_error(
                    await client.post("/api/keys", json={"creator_id": text}, headers=ADMIN), 422
                )

    asyncio.run(scenario())


@pytest.mark.clickhouse
def test_hostile_earnings_parameters(settings, clickhouse) -> None:
    migrate(clickhouse, log=lambda *_: None)

    async def scenario():
        async with running_app(settings) as (_, client):
            for value in HOSTILE_PARAMS:
                for query in (f"from={value}", f"to={value}", f"from={value}&to={value}"):
                    assert_total(await client.get(f"/api/creators/c1/earnings?{query}", headers=ADMIN))
                assert_total(await client.get(f"/api/creators/{value}/earnings", headers=ADMIN))
            for value in HOSTILE_HEADERS:
                headers = {"authorization": b"Bearer " + value}
                assert_json_error(await client.get("/api/creators/c1/earnings", headers=headers), 401)

    asyncio.run(scenario())


def _signed_headers(secret: str, body: bytes) -> dict[str, str]:
    webhook_id, now_s = f"msg_{time.monotonic_ns()}", int(time.time())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(now_s),
        "webhook-signature": webhooks.sign(secret, webhook_id, now_s, body),
    }


def test_hostile_webhook_headers_are_refused_and_counted(settings) -> None:
    body = orjson.dumps(
        {
            "type": "order.created",
            "data": {
                "order_id": "T-1",
                "currency": "EUR",
                "occurred_at": "2026-11-27T10:00:00Z",
                "items": [{"sku": "S", "unit_price_minor": 100, "quantity": 1}],
            },
        }
    )

    async def scenario():
        async with running_app(settings) as (app, client):
            created = await client.post("/api/merchants", json=MERCHANT, headers=ADMIN)
            secret = created.json()["webhook_secret"]
            hook = "/webhooks/orders/mtotal"
            expected: dict[str, int] = {}
            for value in HOSTILE_HEADERS:
                for header in ("webhook-timestamp", "webhook-id", "webhook-signature"):
                    headers = {**_signed_headers(secret, body), header: value}
                    response = await client.post(hook, content=body, headers=headers)
                    assert_json_error(response, 401)
                    reason = response.json()["error"]["code"]
                    expected[reason] = expected.get(reason, 0) + 1
                    if header == "webhook-timestamp" and value:
                        assert reason == webhooks.BAD_TIMESTAMP, value
                headers = {**_signed_headers(secret, body), "content-length": value}
                response = await client.post(hook, content=body, headers=headers)
                assert_json_error(response, 400)
                assert response.json()["error"]["code"] == "bad_content_length"
                expected["bad_content_length"] = expected.get("bad_content_length", 0) + 1
            assert await app.ctx.redis.xlen(app.ctx.keys.orders) == 0  # nothing stored
            text = (await client.get("/metrics")).text
            for reason, count in expected.items():
                assert f'clicktrail_webhooks_total{{result="{reason}"}} {count}.0' in text, reason

    asyncio.run(scenario())


def test_hostile_redirect_headers_and_queries_get_a_clean_302(settings) -> None:
    settings.country_header = "CF-IPCountry"
    settings.trusted_proxies = ["203.0.113.0/24"]  # the test client's address: its headers are believed

    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "c1", "https://shop.example.com/p")
            sent = 0
            for value in HOSTILE_HEADERS:
                for header in ("user-agent", "referer", "x-forwarded-for", "cf-ipcountry"):
                    response = await client.get(f"/{link['code']}", headers={header: value})
                    assert response.status_code == 302, (header, value)
                    sent += 1
            for value in HOSTILE_PARAMS:
                response = await client.get(f"/{link['code']}?{value}={value}&q={quote(value)}")
                assert response.status_code == 302 and header_safe(response.headers["location"])
                sent += 1
            assert (await count_clicks(app.ctx.redis, app.ctx.keys))[0] == sent

    asyncio.run(scenario())


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_other_methods_on_a_code_path_are_405(settings, method: str) -> None:
    async def scenario():
        async with running_app(settings) as (app, client):
            link = await make_link(client, "c1", "https://shop.example.com/p")
            for path in (f"/{link['code']}", "/unknown-code", "/ab"):
                response = await client.request(method, path)
                assert_json_error(response, 405)
                assert response.headers["allow"] == "GET, HEAD"
            assert (await count_clicks(app.ctx.redis, app.ctx.keys))[0] == 0
            label = method if method != "BREW" else "OTHER"
            text = (await client.get("/metrics")).text
            assert f'clicktrail_redirects_total{{method="{label}",status="405"}} 3.0' in text

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/api/nope", 404, None),
        ("GET", "/a/b/c", 404, None),
        ("POST", "/api", 404, None),
        ("GET", "/api/links/abc/extra", 404, None),
        ("PUT", "/api/links", 405, {"GET", "HEAD", "POST"}),
        ("PUT", "/api/links/abc", 405, {"GET", "HEAD", "DELETE", "PATCH"}),
        ("DELETE", "/api/keys", 405, {"GET", "HEAD", "POST"}),
        ("PUT", "/api/keys/" + "0" * 64, 405, {"DELETE"}),
        ("GET", "/api/merchants", 405, {"POST"}),
        ("POST", "/healthz", 405, {"GET", "HEAD"}),
        ("POST", "/metrics", 405, {"GET", "HEAD"}),
        ("GET", "/webhooks/orders/m1", 405, {"POST"}),
    ],
)
def test_router_errors_are_json_with_a_complete_allow(settings, method, path, status, allow) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            response = await client.request(method, path, headers=ADMIN)
            assert_json_error(response, status)
            if allow is not None:
                assert set(response.headers["allow"].split(", ")) == allow

    asyncio.run(scenario())
