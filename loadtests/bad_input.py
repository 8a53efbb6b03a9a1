"""Scenario 8: bad input at volume. A corpus of malformed requests (bad codes, huge heads, invalid
UTF-8, CR/LF in query strings, oversized bodies, truncated and mistyped JSON to the API and the webhook
endpoint, broken framing, every spelling of a planted click parameter, non-ASCII digits in a webhook
timestamp, newlines after ids, currencies and click parameters, other methods on a code path) sent many
times over, concurrently, each on its own connection. Verdict: never a 5xx, never a hang, no Location that
carries CR/LF or a planted click id, the server process never died, and nothing stored but
the clicks of the requests that were legitimately answered 302 (a valid code with an odd but encodable
query is a click)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from loadtests.common import Run, drain_and_count, run_async
from loadtests.load import click_id_of
from loadtests.system import ADMIN_TOKEN, DATABASE, System
from loadtests.verdict import Verdict

CONCURRENCY = 32
RESPONSE_TIMEOUT_S = 15.0  # a request still unanswered after this is a hang
ADMIN = f"authorization: Bearer {ADMIN_TOKEN}\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    expect: frozenset[int] | None = None  # statuses the contract names for this input (checked)
    half_close: bool = False  # send, then shut our side down (a body that never comes)
    weight: int = 1  # relative repetitions (the megabyte-sized cases run less often)


def _get(target: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n" + extra + b"\r\n"


def _post(path: str, body: bytes, headers: str = "", length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\n"
    )
    return (head + headers + f"content-length: {n}\r\n\r\n").encode() + body


def _signed(secret: str, body: bytes, *, ts: int | None = None, bad: bool = False) -> str:
    webhook_id = f"msg_bad_{time.monotonic_ns()}"
    ts = int(time.time()) if ts is None else ts
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    if bad:
        mac = bytes(32)
    sig = base64.b64encode(mac).decode()
    return f"webhook-id: {webhook_id}\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: v1,{sig}\r\n"


def _with_timestamp(headers: str, timestamp: bytes) -> bytes:
    """Signed headers with the timestamp replaced by raw bytes (the signature no longer matters)."""
    lines = [line for line in headers.split("\r\n") if line and not line.startswith("webhook-timestamp:")]
    return "".join(f"{line}\r\n" for line in lines).encode() + b"webhook-timestamp: " + timestamp + b"\r\n"


def _post_raw(path: str, body: bytes, headers: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\n"
    )
    return head.encode() + headers + f"content-length: {len(body)}\r\n\r\n".encode() + body


def _patch(path: str, body: bytes, headers: str = "") -> bytes:
    head = (
        f"PATCH {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\n"
    )
    return (head + headers + f"content-length: {len(body)}\r\n\r\n").encode() + body


# Smart-link fields a POST and a PATCH of /api/links refuse with 422 (redirector/linkfields.py).
BAD_SMART_FIELDS = {
    "rule_javascript": {"rules": [{"when": {"os": ["ios"]}, "url": "javascript:alert(1)"}]},
    "rule_javascript_slashes": {"rules": [{"url": "JaVaScRiPt://%0Aalert(1)"}]},
    "rule_data": {"rules": [{"url": "data:text/html,<script>alert(1)</script>"}]},
    "rule_tab_in_scheme": {"rules": [{"url": "java\tscript://x"}]},
    "rule_encoded_scheme": {"rules": [{"url": "java%73cript://x"}]},
    "rule_no_slashes": {"rules": [{"url": "shopapp:product"}]},
    "rule_bad_os": {"rules": [{"when": {"os": ["beos"]}, "url": "https://a.example/"}]},
    "rule_lower_country": {"rules": [{"when": {"country": ["gb"]}, "url": "https://a.example/"}]},
    "rules_too_many": {"rules": [{"url": "https://a.example/"}] * 21},
    "variant_zero_weight": {"variants": [{"url": "https://a.example/", "weight": 0}]},
    "variant_float_weight": {"variants": [{"url": "https://a.example/", "weight": 0.5}]},
    "variant_app_scheme": {"variants": [{"url": "shopapp://p", "weight": 1}]},
    "variants_too_many": {"variants": [{"url": "https://a.example/", "weight": 1}] * 11},
    "expires_at_no_zone": {"expires_at": "2026-12-31T00:00:00"},
    "expires_at_garbage": {"expires_at": "soon"},
    "max_clicks_negative": {"max_clicks": -1},
    "expired_url_vbscript": {"expired_url": "vbscript:msgbox(1)"},
    "expired_url_loopback": {"expired_url": "http://127.0.0.1/"},
}


def _method(method: str, target: bytes) -> bytes:
    return (
        method.encode()
        + b" "
        + target
        + b" HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )


# Spellings of the click parameter a merchant's server reads as `ct_click` (redirector/querykeys.py).
PLANTED_SPELLINGS = (
    b"ct%5Fclick",
    b"ct%5fclick",
    b"%63t_click",
    b"%2563t_click",
    b"CT_CLICK",
    b"ct.click",
    b"ct+click",
    b"ct_click[]",
    b"ct_click%00",
    b"x=1;ct_click",
)


def corpus(code: str, merchant: str, secret: str) -> list[Case]:
    c = code.encode()
    hook = f"/webhooks/orders/{merchant}"
    order = {
        "type": "order.created",
        "data": {"order_id": "BAD-1", "currency": "EUR", "occurred_at": "2026-11-27T10:00:00Z",
                 "click_id": "x", "items": [{"sku": "S", "unit_price_minor": 100, "quantity": 1}]},
    }  # fmt: skip
    valid = json.dumps(order).encode()

    def priced(items: list[tuple[int, int]], kind: str = "order.created") -> bytes:
        lines = [{"sku": f"S{i}", "unit_price_minor": p, "quantity": q} for i, (p, q) in enumerate(items)]
        return json.dumps({"type": kind, "data": {**order["data"], "items": lines}}).encode()

    # Each field within its limit, the line or the order past 10^13 minor units (sums would wrap Int64).
    over_bound = {
        "webhook_line_total_over_bound": priced([(10**12, 1_000_000)]),
        "webhook_order_total_over_bound": priced([(10**12, 5), (10**12, 5), (1, 1)]),
        "webhook_many_lines_over_bound": priced([(10**12, 1_000_000)] * 1_000),
        "webhook_refund_over_bound": priced([(10**12, 11)], kind="order.refunded"),
    }
    earnings = "/api/creators/c1/earnings?"
    bad_days = {
        "api_earnings_day_before_1970": "from=0001-01-01",
        "api_earnings_day_after_2105": "to=9999-12-31",
        "api_earnings_reversed": "from=2026-02-01&to=2026-01-31",
        "api_earnings_month_13": "from=2026-13-01",
        "api_earnings_trailing_garbage": "from=2026-01-01xyz",
        "api_earnings_basic_format": "to=20260101",
    }
    truncated = valid[: len(valid) // 2]
    big = b'{"pad": "' + b"a" * (300 * 1024) + b'"}'
    e302, e400, e401, e404, e405, e413, e422, e431 = (
        frozenset({s}) for s in (302, 400, 401, 404, 405, 413, 422, 431)
    )
    newline_currency = valid.replace(b'"EUR"', b'"EUR\\n"')
    merchant_body = {"merchant_id": "mbad2", "name": "x", "domains": ["mbad2.example.com"], "currency": "EUR",
                     "default_rate_bps": 800}  # fmt: skip
    e409 = frozenset({409})

    def link_to(url: str) -> bytes:
        return _post("/api/links", json.dumps({"url": url, "creator_id": "c1"}).encode(), ADMIN)

    def endpoint_with(**fields) -> bytes:
        body = {
            "url": "https://hooks.example.com/ct",
            "events": ["link.created"],
            "creator_id": "c1",
            **fields,
        }
        return _post("/api/endpoints", json.dumps(body).encode(), ADMIN)

    def merchant_with(domains: list[str], **extra) -> bytes:
        body = {"merchant_id": "mover", "name": "Mover", "domains": domains, "currency": "EUR",
                "default_rate_bps": 800, **extra}  # fmt: skip
        return _post("/api/merchants", json.dumps(body).encode(), ADMIN)

    return [
        # codes that are not codes
        Case("code_bad_chars", lambda: _get(b"/ab$cd!"), e404),
        Case("code_too_long", lambda: _get(b"/" + b"a" * 65), e404),
        Case("code_unknown", lambda: _get(b"/zzzzzzzzzz"), e404),
        Case("code_traversal", lambda: _get(b"/..%2f..%2fetc%2fpasswd"), e404),
        Case("code_nul", lambda: _get(b"/abc%00def"), e404),
        Case("code_two_segments", lambda: _get(b"/" + c + b"/x"), e404),
        Case("code_pct_invalid_utf8", lambda: _get(b"/%ff%fe%fd")),
        Case("code_raw_invalid_utf8", lambda: _get(b"/\xff\xfe\xfd")),
        Case("unknown_method", lambda: b"BREW /" + c + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        # valid code, hostile query strings and headers: a click, but a clean Location
        Case("query_crlf_encoded", lambda: _get(b"/" + c + b"?x=%0d%0aSet-Cookie:%20a=b&y=%0a")),
        Case("query_pct_invalid_utf8", lambda: _get(b"/" + c + b"?q=%ff%fe%c3%28")),
        Case("query_raw_invalid_utf8", lambda: _get(b"/" + c + b"?q=\xff\xfe")),
        Case("query_crlf_raw", lambda: _get(b"/" + c + b"?x=a\r\nSet-Cookie: a=b")),
        Case("query_lf_raw", lambda: _get(b"/" + c + b"?x=a\nb")),
        Case("query_planted_click_id", lambda: _get(b"/" + c + b"?ct_click=forged&ct_click=x")),
        *(
            Case(f"query_planted_{i}", lambda s=s: _get(b"/" + c + b"?a=1&" + s + b"=forged"), e302)
            for i, s in enumerate(PLANTED_SPELLINGS)
        ),
        Case("header_invalid_utf8_ua", lambda: _get(b"/" + c, b"user-agent: \xff\xfe\xc3\x28\r\n")),
        Case("header_nul", lambda: _get(b"/" + c, b"user-agent: a\x00b\r\n")),
        Case("header_huge_70k", lambda: _get(b"/" + c, b"x-big: " + b"a" * 70_000 + b"\r\n"), e431),
        Case("header_huge_1m", lambda: _get(b"/" + c, b"x-big: " + b"a" * 1_048_576 + b"\r\n"), weight=0),
        Case("header_many", lambda: _get(b"/" + c, b"".join(b"x-h%d: v\r\n" % i for i in range(5_000)))),
        Case("url_huge_query", lambda: _get(b"/" + c + b"?q=" + b"a" * 100_000), e431),
        Case("empty_request", lambda: b"\r\n\r\n"),
        Case("garbage", lambda: bytes(range(256)) * 2),
        Case("http10_no_host", lambda: b"GET /" + c + b" HTTP/1.0\r\n\r\n"),
        Case("absolute_form", lambda: _get(b"http://evil.example/" + c)),
        # other methods on a code path, unknown API paths: JSON 405 / 404
        *(
            Case(f"code_method_{m.lower()}", lambda m=m: _method(m, b"/" + c), e405)
            for m in ("POST", "PUT", "DELETE")
        ),
        Case("api_wrong_method", lambda: _method("PUT", b"/api/links"), e405),
        Case("api_unknown_path", lambda: _get(b"/api/nope/nope"), e404),
        # framing
        Case("content_length_negative", lambda: _post("/api/links", b"{}", ADMIN, length=-1)),
        Case(
            "content_length_short_body",
            lambda: _post("/api/links", b"{}", ADMIN, length=100),
            half_close=True,
        ),
        Case(
            "chunked_bad_size",
            lambda: (
                b"POST /api/links HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                + ADMIN.encode()
                + b"transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
            ),
        ),
        Case(
            "cl_and_te",
            lambda: (
                b"POST /api/links HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                + ADMIN.encode()
                + b"content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
        ),
        # the management API
        Case("api_links_truncated_json", lambda: _post("/api/links", b'{"url": "https://shop.exa', ADMIN)),
        Case("api_links_wrong_types", lambda: _post("/api/links", b'{"url": 5, "creator_id": []}', ADMIN)),
        Case(
            "api_links_invalid_utf8", lambda: _post("/api/links", b'{"url": "https://\xff.example/"}', ADMIN)
        ),
        Case(
            "api_links_crlf_url",
            lambda: _post("/api/links", b'{"url": "https://a.example/\\r\\nx", "creator_id": "c1"}', ADMIN),
        ),
        Case(
            "api_links_oversized", lambda: _post("/api/links", b'{"url": "' + b"a" * 2_000_000 + b'"}', ADMIN)
        ),
        Case("api_links_unauthenticated", lambda: _post("/api/links", b'{"url": "https://a.example/"}')),
        # destinations that are not on the public internet (redirector/urls.py)
        Case("api_links_loopback_ip", lambda: link_to("http://127.0.0.1:8000/admin"), e422),
        Case("api_links_numeric_loopback", lambda: link_to("http://0x7f.1/"), e422),
        Case("api_links_mapped_ipv6", lambda: link_to("http://[::ffff:127.0.0.1]/"), e422),
        Case("api_links_unspecified_ip", lambda: link_to("http://0.0.0.0/"), e422),
        Case("api_links_metadata_ip", lambda: link_to("http://169.254.169.254/latest/meta-data/"), e422),
        Case("api_links_private_ip", lambda: link_to("https://10.0.0.1/"), e422),
        Case("api_links_localhost_dot", lambda: link_to("https://localhost./"), e422),
        Case("api_links_sub_localhost", lambda: link_to("https://admin.localhost/"), e422),
        # open_in and QR codes (redirector/escape.py, redirector/qr.py)
        *(
            Case(
                f"api_links_open_in_{name}",
                lambda v=v: _post(
                    "/api/links",
                    json.dumps({"url": "https://a.example/", "creator_id": "c1", "open_in": v}).encode(),
                    ADMIN,
                ),
                e422,
            )
            for name, v in (("unknown", "app"), ("case", "Browser"), ("list", ["browser"]), ("number", 1))
        ),
        *(
            Case(
                f"api_qr_size_{name}",
                lambda q=q: _get(b"/api/links/" + c + b"/qr.png?size=" + q, ADMIN.encode()),
                e400,
            )
            for name, q in (
                ("huge", b"99999999999999999999"),
                ("small", b"63"),
                ("arabic_digits", b"%D9%A4%D9%A0%D9%A0"),
                ("signed", b"%2B400"),
                ("float", b"4e2"),
            )
        ),
        Case("api_qr_unknown_code", lambda: _get(b"/api/links/zzzzzzzzzz/qr.svg", ADMIN.encode()), e404),
        # merchant domains: overlaps with mbad's badinput.example.com, and hosts that are not public
        Case("api_merchants_parent_domain", lambda: merchant_with(["example.com"]), e409),
        Case("api_merchants_subdomain", lambda: merchant_with(["shop.badinput.example.com"]), e409),
        Case("api_merchants_same_domain", lambda: merchant_with(["badinput.example.com"]), e409),
        Case("api_merchants_ip_domain", lambda: merchant_with(["127.0.0.1"]), e422),
        Case("api_merchants_local_domain", lambda: merchant_with(["shop.localhost"]), e422),
        Case(
            "api_merchants_transfer_not_bool",
            lambda: merchant_with(["example.com"], transfer_domains="yes"),
            e422,
        ),
        # smart links (rules, variants, expiry): refused by POST and by PATCH alike, nothing written
        *(
            Case(
                f"api_links_smart_{name}",
                lambda fields=fields: _post(
                    "/api/links",
                    json.dumps({"url": "https://a.example/", "creator_id": "c1", **fields}).encode(),
                    ADMIN,
                ),
                e422,
            )
            for name, fields in BAD_SMART_FIELDS.items()
        ),
        *(
            Case(
                f"api_links_patch_{name}",
                lambda fields=fields: _patch(f"/api/links/{code}", json.dumps(fields).encode(), ADMIN),
                e422,
            )
            for name, fields in BAD_SMART_FIELDS.items()
        ),
        Case(
            "api_links_patch_creator",
            lambda: _patch(f"/api/links/{code}", b'{"creator_id": "x"}', ADMIN),
            e422,
        ),
        Case("api_links_patch_truncated_json", lambda: _patch(f"/api/links/{code}", b'{"url": "ht', ADMIN)),
        Case("api_keys_truncated_json", lambda: _post("/api/keys", b'{"creator_id": "c', ADMIN)),
        Case("api_keys_newline_id", lambda: _post("/api/keys", b'{"creator_id": "c1\\n"}', ADMIN), e422),
        *(
            Case(
                f"api_merchants_newline_{field}",
                lambda field=field, v=v: _post(
                    "/api/merchants", json.dumps({**merchant_body, field: v}).encode(), ADMIN
                ),
                e422,
            )
            for field, v in (("merchant_id", "m\n"), ("currency", "EUR\n"), ("click_param", "ct_click\n"))
        ),
        Case("api_merchants_truncated_json", lambda: _post("/api/merchants", b'{"merchant_id": "m', ADMIN)),
        Case(
            "api_catalog_truncated_json",
            lambda: (
                f"PUT /api/merchants/{merchant}/catalog HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{ADMIN}"
                'content-length: 9\r\n\r\n[{"sku": '
            ).encode(),
        ),
        *_catalog_cases(merchant),
        *_code_cases(merchant, secret, order["data"]),
        Case("api_link_bad_code", lambda: _get(b"/api/links/%ff%fe", ADMIN.encode())),
        Case(
            "api_earnings_bad_dates",
            lambda: _get(b"/api/creators/c1/earnings?from=x&to=%ff", ADMIN.encode()),
            e400,
        ),
        # order webhooks: the contract's statuses
        Case("webhook_truncated_signed", lambda: _post(hook, truncated, _signed(secret, truncated)), e400),
        Case(
            "webhook_wrong_schema_signed",
            lambda: _post(hook, b'{"type": "x"}', _signed(secret, b'{"type": "x"}')),
            e400,
        ),
        Case(
            "webhook_invalid_utf8_signed",
            lambda: _post(hook, b'{"\xff": 1}', _signed(secret, b'{"\xff": 1}')),
            e400,
        ),
        *(
            Case(name, lambda body=body: _post(hook, body, _signed(secret, body)), e400)
            for name, body in over_bound.items()
        ),
        *(
            Case(name, lambda query=query: _get((earnings + query).encode(), ADMIN.encode()), e400)
            for name, query in bad_days.items()
        ),
        Case(
            "webhook_newline_currency_signed",
            lambda: _post(hook, newline_currency, _signed(secret, newline_currency)),
            e400,
        ),
        *(
            Case(
                f"webhook_timestamp_{i}",
                lambda ts=ts: _post_raw(hook, valid, _with_timestamp(_signed(secret, valid), ts)),
                e401,
            )
            for i, ts in enumerate((b"\xb2", b"\xb9\xb2\xb3", "١٧٦٤٢٣٧٦٠٠".encode(), b"-1", b"9" * 40))
        ),
        Case("webhook_unsigned", lambda: _post(hook, valid), e401),
        Case("webhook_bad_signature", lambda: _post(hook, valid, _signed(secret, valid, bad=True)), e401),
        Case(
            "webhook_stale",
            lambda: _post(hook, valid, _signed(secret, valid, ts=int(time.time()) - 3600)),
            e401,
        ),
        Case(
            "webhook_garbage_headers",
            lambda: _post(
                hook, valid, "webhook-id: \r\nwebhook-timestamp: soon\r\nwebhook-signature: v1,!!!\r\n"
            ),
            e401,
        ),
        Case("webhook_oversized_signed", lambda: _post(hook, big, _signed(secret, big)), e413),
        Case("webhook_oversized_lying_length", lambda: _post(hook, big, _signed(secret, big), length=100)),
        Case(
            "webhook_unknown_merchant",
            lambda: _post("/webhooks/orders/nobody", valid, _signed(secret, valid)),
            e404,
        ),
        # Events out and the webhook debugger: each refusal a 4xx that stores no endpoint.
        Case(
            "api_endpoints_truncated_json",
            lambda: _post("/api/endpoints", b'{"url": "https://h', ADMIN),
            e400,
        ),
        Case("api_endpoints_not_an_object", lambda: _post("/api/endpoints", b"[1]", ADMIN), e400),
        Case("api_endpoints_loopback", lambda: endpoint_with(url="https://127.0.0.1/x"), e422),
        Case("api_endpoints_metadata", lambda: endpoint_with(url="https://169.254.169.254/latest/"), e422),
        Case("api_endpoints_plain_http", lambda: endpoint_with(url="http://hooks.example.com/"), e422),
        Case("api_endpoints_credentials", lambda: endpoint_with(url="https://u:p@hooks.example.com/"), e422),
        Case("api_endpoints_crlf_url", lambda: endpoint_with(url="https://hooks.example.com/\r\nx"), e422),
        Case(
            "api_endpoints_huge_url", lambda: endpoint_with(url="https://h.example.com/" + "a" * 5000), e422
        ),
        Case("api_endpoints_unknown_event", lambda: endpoint_with(events=["order.created"]), e422),
        Case("api_endpoints_events_not_a_list", lambda: endpoint_with(events="link.created"), e422),
        Case("api_endpoints_no_scope", lambda: endpoint_with(creator_id=None), e422),
        Case("api_endpoints_newline_creator", lambda: endpoint_with(creator_id="c1\n"), e422),
        Case("api_endpoints_bad_id", lambda: _get(b"/api/endpoints/ep_%ff%fe", ADMIN.encode()), e404),
        Case(
            "api_endpoints_replay_unknown",
            lambda: _post("/api/endpoints/ep_" + "0" * 24 + "/replay", b'{"since": "x"}', ADMIN),
            e404,
        ),
        Case(
            "api_deliveries_bad_limit",
            lambda: _get(b"/api/merchants/mbad/deliveries?limit=%ff", ADMIN.encode()),
            e400,
        ),
        Case(
            "api_deliveries_bad_result",
            lambda: _get(b"/api/merchants/mbad/deliveries?result=x", ADMIN.encode()),
            e400,
        ),
        *_money_cases(merchant, secret, valid),
    ]


def _money_cases(merchant: str, secret: str, valid: bytes) -> list[Case]:
    """Currencies, FX and payouts (docs/money.md): each refused with its 4xx, nothing written."""
    e400, e404, e422 = (frozenset({s}) for s in (400, 404, 422))
    hook = f"/webhooks/orders/{merchant}"
    gbp = valid.replace(b'"EUR"', b'"GBP"')
    payouts = f"/api/merchants/{merchant}/payouts"

    def merchant_currencies(value) -> bytes:
        body = {"merchant_id": "mcur", "name": "x", "domains": ["mcur.example.com"], "currency": "EUR",
                "default_rate_bps": 800, "currencies": value}  # fmt: skip
        return _post("/api/merchants", json.dumps(body).encode(), ADMIN)

    def fx(body) -> bytes:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return (
            f"PUT /api/fx HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{ADMIN}"
            f"content-length: {len(raw)}\r\n\r\n"
        ).encode() + raw

    return [
        Case("webhook_unsupported_currency_signed", lambda: _post(hook, gbp, _signed(secret, gbp)), e400),
        *(
            Case(f"api_merchants_currencies_{i}", lambda v=v: merchant_currencies(v), e422)
            for i, v in enumerate((["EUR", "EUR"], "EUR", [], ["eur"], ["XAU"], ["EUR"] * 21, [1]))
        ),
        *(
            Case(f"api_fx_{name}", lambda body=body: fx(body), e422)
            for name, body in (
                ("negative", {"base": "EUR", "rates": {"USD": "-1"}}),
                ("zero", {"base": "EUR", "rates": {"USD": "0.0"}}),
                ("exponent", {"base": "EUR", "rates": {"USD": "1e5"}}),
                ("float", {"base": "EUR", "rates": {"USD": 1.085}}),
                ("too_precise", {"base": "EUR", "rates": {"USD": "1." + "1" * 13}}),
                ("base_gold", {"base": "XAU", "rates": {"USD": "1"}}),
                ("no_zone", {"base": "EUR", "rates": {"USD": "1"}, "effective_at": "2026-12-01T00:00:00"}),
                ("unknown_field", {"base": "EUR", "rates": {"USD": "1"}, "rate": "1"}),
            )
        ),
        Case("api_fx_truncated_json", lambda: fx(b'{"base": "EUR", "rat'), e400),
        *(
            Case(
                f"api_payouts_{name}",
                lambda body=body: _post(payouts, json.dumps(body).encode(), ADMIN),
                e422,
            )
            for name, body in (
                ("until_future", {"until": "2100-01-01T00:00:00Z"}),
                ("until_garbage", {"until": "yesterday"}),
                ("min_negative", {"until": "2026-01-01T00:00:00Z", "min_amount_minor": -1}),
                ("min_float", {"until": "2026-01-01T00:00:00Z", "min_amount_minor": 1.5}),
            )
        ),
        Case(
            "api_payouts_unknown_merchant", lambda: _post("/api/merchants/nobody/payouts", b"{}", ADMIN), e404
        ),
        Case("api_payout_unknown", lambda: _get(b"/api/payouts/nobody.123", ADMIN.encode()), e404),
        Case("api_payout_confirm_unknown", lambda: _post("/api/payouts/x.1/confirm", b"", ADMIN), e404),
        Case(
            "api_payout_statement_no_dot",
            lambda: _get(b"/api/payouts/nodot/statement.csv", ADMIN.encode()),
            e404,
        ),
        *(
            Case(
                f"api_earnings_in_{i}",
                lambda q=q: _get(b"/api/creators/c1/earnings?in=" + q, ADMIN.encode()),
                e400,
            )
            for i, q in enumerate((b"eur", b"XAU", b"%ff", b""))
        ),
    ]


def _put(path: str, body: bytes) -> bytes:
    return _post(path, body, ADMIN).replace(b"POST ", b"PUT ", 1)


def _catalog_cases(merchant: str) -> list[Case]:
    """Catalog, search and rate requests past a bound: refused whole with their status, nothing written."""
    path, rates = f"/api/merchants/{merchant}/catalog", f"/api/merchants/{merchant}/rates"
    item = {
        "sku": "S",
        "title": "t",
        "url": "https://badinput.example.com/p",
        "price_minor": 1,
        "currency": "EUR",
    }
    too_many = json.dumps([{**item, "sku": f"S{i}"} for i in range(5_001)]).encode()
    bad_field = json.dumps([item, {**item, "sku": "S2", "currency": "EUR\n"}]).encode()
    long_title = json.dumps([{**item, "title": "t" * 201}]).encode()
    creators = json.dumps({"default_rate_bps": 800, "creators": {f"c{i}": 1 for i in range(1_001)}}).encode()
    bad_creator = json.dumps({"default_rate_bps": 800, "creators": {"a b": 1}}).encode()
    e400, e413, e422 = (frozenset({s}) for s in (400, 413, 422))
    search = [
        ("limit_zero", b"limit=0"), ("limit_huge", b"limit=100000"), ("limit_not_int", b"limit=%D9%A5"),
        ("q_too_long", b"q=" + b"x" * 101), ("category_newline", b"category=a%0a"),
        ("merchant_id_bad", b"merchant_id=a%20b"), ("creator_id_newline", b"creator_id=c%0a"),
        ("cursor_garbage", b"cursor=%ff!!"),
    ]  # fmt: skip
    return [
        Case("api_catalog_too_many_products", lambda: _put(path, too_many), e413),
        Case("api_catalog_bad_field", lambda: _put(path, bad_field), e422),
        Case("api_catalog_title_too_long", lambda: _put(path, long_title), e422),
        Case("api_rates_too_many_creators", lambda: _put(rates, creators), e422),
        Case("api_rates_bad_creator_id", lambda: _put(rates, bad_creator), e422),
        *[
            Case(f"api_search_{name}", lambda q=query: _get(b"/api/catalog?" + q, ADMIN.encode()), e400)
            for name, query in search
        ],
    ]


def _code_cases(merchant: str, secret: str, data: dict) -> list[Case]:
    """Discount codes, PATCH, review and trace inputs past a bound: a clear 4xx, nothing written."""
    base = f"/api/merchants/{merchant}"
    hook = f"/webhooks/orders/{merchant}"
    e400, e404, e422 = (frozenset({s}) for s in (400, 404, 422))
    # these two read ClickHouse: a 503 while it is unreachable is the contract's answer too
    e409, e404_or_503 = frozenset({409, 503}), frozenset({404, 503})

    def with_codes(codes) -> bytes:
        return json.dumps({"type": "order.created", "data": {**data, "discount_codes": codes}}).encode()

    def patch(body: dict) -> bytes:
        return _post(base, json.dumps(body).encode(), ADMIN).replace(b"POST ", b"PATCH ", 1)

    bad_codes = {
        "webhook_codes_not_a_list": with_codes("ALICE10"),
        "webhook_codes_not_strings": with_codes([10]),
        "webhook_codes_too_many": with_codes(["A"] * 21),
        "webhook_code_too_long": with_codes(["A" * 65]),
        "webhook_code_empty": with_codes([""]),
        "webhook_code_control_char": with_codes(["A\nB"]),
    }
    bad_patches = {
        "api_patch_priority": {"attribution_priority": "first"},
        "api_patch_review_negative": {"review": {"min_click_to_order_s": -1}},
        "api_patch_review_huge": {"review": {"max_clicks_per_ip_hour": 10**12}},
        "api_patch_review_unknown": {"review": {"max_orders": 1}},
        "api_patch_unknown_field": {"merchant_id": "other"},
        "api_patch_empty": {},
    }
    code_put = json.dumps({"creator_id": "c1"}).encode()
    return [
        *(Case(n, lambda b=b: _post(hook, b, _signed(secret, b)), e400) for n, b in bad_codes.items()),
        *(Case(n, lambda b=b: patch(b), e422) for n, b in bad_patches.items()),
        Case("api_code_bad_chars", lambda: _put(f"{base}/codes/a%20b", code_put), e422),
        Case("api_code_too_short", lambda: _put(f"{base}/codes/ab", code_put), e422),
        Case("api_code_bad_creator", lambda: _put(f"{base}/codes/GOOD1", b'{"creator_id": "a b"}'), e422),
        Case(
            "api_code_bad_rate",
            lambda: _put(f"{base}/codes/GOOD1", b'{"creator_id": "c", "rate_bps": 10001}'),
            e422,
        ),
        Case(
            "api_code_delete_unknown",
            lambda: _post(f"{base}/codes/NOPE1", b"", ADMIN).replace(b"POST ", b"DELETE ", 1),
            e404,
        ),
        Case(
            "api_review_bad_decision",
            lambda: _post(f"{base}/orders/X/review", b'{"decision": "y"}', ADMIN),
            e422,
        ),
        Case(
            "api_review_nothing",
            lambda: _post(f"{base}/orders/X/review", b'{"decision": "reject"}', ADMIN),
            e409,
        ),
        Case(
            "api_trace_unknown_order",
            lambda: _get(f"{base}/orders/NOPE/trace".encode(), ADMIN.encode()),
            e404_or_503,
        ),
    ]


@dataclass
class Outcome:
    status: int  # 0: no response (closed), -1: hang
    location: bytes = b""


async def _send(port: int, case: Case) -> Outcome:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    except OSError:
        return Outcome(0)
    try:
        async with asyncio.timeout(RESPONSE_TIMEOUT_S):
            try:
                writer.write(case.build())
                await writer.drain()
                if case.half_close:
                    writer.write_eof()
            except OSError:
                pass  # the server may refuse before reading everything: its answer is what counts
            data = b""
            with contextlib.suppress(OSError):
                while chunk := await reader.read(65536):
                    data += chunk
    except TimeoutError:
        return Outcome(-1)
    finally:
        writer.close()
    if not data.startswith(b"HTTP/"):
        return Outcome(0)
    status = int(data.split(b" ", 2)[1])
    location = b""
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"location":
            location = value.strip()
    return Outcome(status, location)


def bad_input(run: Run) -> Verdict:
    verdict = Verdict("bad_input", run.mode)
    repeats = run.pick(100, 3)
    system = run.system()
    try:
        system.start()
        code = system.make_links(1)[0]
        merchant = system.admin("POST", "/api/merchants", {
            "merchant_id": "mbad", "name": "Bad Input Shop", "domains": ["badinput.example.com"],
            "currency": "EUR", "default_rate_bps": 800,
        })  # fmt: skip
        cases = corpus(code, "mbad", merchant["webhook_secret"])
        serve_pid = system.serve_proc.pid if system.serve_proc else 0
        links_before = _count_keys(system, "link:*")

        async def main() -> dict[str, list[Outcome]]:
            todo = [case for case in cases for _ in range(repeats * case.weight or 1)]
            results: dict[str, list[Outcome]] = defaultdict(list)
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(case: Case) -> None:
                async with gate:
                    results[case.name].append(await _send(system.port, case))

            await asyncio.gather(*(one(case) for case in todo))
            return results

        started = time.monotonic()
        results = run_async(main())
        elapsed = time.monotonic() - started
        _verdict(verdict, system, cases, results, elapsed, serve_pid, links_before)
    finally:
        system.close()
    return verdict


def _verdict(
    verdict: Verdict,
    system: System,
    cases: list[Case],
    results: dict[str, list[Outcome]],
    elapsed: float,
    serve_pid: int,
    links_before: int,
) -> None:
    per_case = {name: dict(Counter(o.status for o in outs)) for name, outs in results.items()}
    total = sum(len(outs) for outs in results.values())
    five = {n: c for n, c in per_case.items() if any(s >= 500 for s in c)}
    hangs = {n: c[-1] for n, c in per_case.items() if -1 in c}
    unexpected = {
        case.name: per_case[case.name] for case in cases
        if case.expect and set(per_case.get(case.name, {})) - case.expect
    }  # fmt: skip
    answered = [click_id_of(o.location) for outs in results.values() for o in outs if o.status == 302]
    dirty = sum(1 for outs in results.values() for o in outs if o.status == 302
                and any(b in o.location for b in (b"\r", b"\n", b" ", b"\x00")))  # fmt: skip
    forged = sum(
        1
        for name, outs in results.items()
        if name.startswith("query_planted")
        for o in outs
        if b"forged" in o.location
    )
    verdict.figures.update(requests=total, seconds=round(elapsed, 1), per_case=per_case, cases=len(cases))
    verdict.check("no 5xx", not five, f"{total} requests over {len(cases)} kinds; 5xx in: {five or 'none'}")
    verdict.check(
        "no request hung", not hangs, f"unanswered after {RESPONSE_TIMEOUT_S:g} s: {hangs or 'none'}"
    )
    verdict.check(
        "contract statuses (webhooks 400/401/404/413, 431 head, 405/404/422 API, 302 planted)",
        not unexpected,
        f"mismatches: {unexpected or 'none'}",
    )
    verdict.check(
        "Locations clean (no CR/LF/space/NUL, no planted click id)",
        dirty == 0 and forged == 0,
        f"{dirty} dirty, {forged} with the planted id, of {len(answered)} 302s",
    )
    alive = system.serve_proc is not None and system.serve_proc.poll() is None
    healthy = alive and system.request("GET", "/healthz")[0] == 200
    log = (system.logs / "serve.log").read_text(errors="replace")
    tracebacks = log.count("Traceback")
    verdict.check(
        "server alive, healthy, no traceback in its log",
        healthy and tracebacks == 0,
        f"serve pid {serve_pid} alive: {alive}; tracebacks logged: {tracebacks}",
    )
    links_after = _count_keys(system, "link:*")
    orders = system.redis_client().xlen(system.keys.orders)
    products = system.redis_client().hlen(system.keys.catalog("mbad"))
    rate_versions = system.redis_client().llen(system.keys.rates("mbad"))
    events = _order_events(system)
    verdict.check(
        "no link, product, rate version or order event stored from bad input",
        links_after == links_before and orders == 0 and not events and not products and rate_versions == 1,
        f"links {links_before} → {links_after}; orders stream {orders}; order_events rows {events}; "
        f"catalog products {products}; rate versions {rate_versions} (1: the one made at registration)",
    )
    endpoints = system.redis_client().scard(system.keys.endpoints)
    verdict.check("no event endpoint stored from bad input", endpoints == 0, f"endpoints {endpoints}")
    drain_and_count(verdict, system, [cid for cid in answered if cid], 60)


def _count_keys(system: System, pattern: str) -> int:
    client = system.redis_client()
    try:
        return sum(1 for _ in client.scan_iter(match=f"{system.keys.prefix}{pattern}", count=1000))
    finally:
        client.close()


def _order_events(system: System) -> int:
    assert system.ch is not None
    client = system.ch.client(DATABASE)
    try:
        return client.execute("SELECT count() FROM order_events")[0][0]
    except Exception:
        return 0  # no order_events table yet
    finally:
        client.disconnect()
