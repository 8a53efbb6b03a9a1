"""schemathesis against a real `clicktrail serve` on the real Redis and ClickHouse: every operation of
docs/openapi.json (equal to what the server serves, checked first) with a bounded number of generated
requests each, as the admin, a merchant, a creator or nobody, on real subjects (an existing merchant,
creator and link) or generated ones. No answer may be a 5xx, and each must be one the document describes:
a listed status, its content type and its body schema. Order webhooks come unsigned (they get the
documented 401) or, on the real merchant, signed with its secret, so that their generated bodies reach
the parser."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NotSet

from core.clickhouse import NativeClickHouse
from core.migrate import migrate
from core.settings import Settings
from tests.conftest import CLICKHOUSE_URL, REDIS_URL
from tests.integration.servehelp import ServeProcess

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse]

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(SPEC)
# Generated requests per operation and principal mix: ~45 operations, the whole run well under 3 minutes.
# CLICKTRAIL_TEST_FUZZ_EXAMPLES raises it for a deeper run by hand.
EXAMPLES_PER_OPERATION = int(os.environ.get("CLICKTRAIL_TEST_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MERCHANT = {
    "merchant_id": "brand1",
    "name": "Brand One",
    "domains": ["shop.brand1.example"],
    "currency": "EUR",
    "default_rate_bps": 800,
}


class Live:
    def __init__(self, server: ServeProcess, headers: dict, subjects: dict[str, str], secret: str) -> None:
        self.server = server
        self.headers = headers
        self.subjects = subjects
        self.webhook_secret = secret


def signed_webhook(case, live: Live) -> httpx.Response:
    """The generated order body sent to the real merchant, signed with its secret (Standard Webhooks, over
    the exact bytes, which need not be UTF-8): past the signature check, so that the body parser and the
    acceptor meet the fuzzer too."""
    body = case.body
    if isinstance(body, NotSet):
        raw = b""
    elif isinstance(body, bytes):
        raw = body
    else:
        raw = json.dumps(body, default=lambda b: b.decode("latin-1")).encode()
    return post_signed(live, raw)


def post_signed(live: Live, raw: bytes) -> httpx.Response:
    webhook_id = "msg_" + uuid.uuid4().hex
    timestamp = str(int(time.time()))
    key = base64.b64decode(live.webhook_secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "content-type": "application/json",
    }
    url = live.server.url + "/webhooks/orders/" + live.subjects["merchant_id"]
    return httpx.post(url, content=raw, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    test_id = secrets.token_hex(4)
    conf = Settings.load(
        redis_url=REDIS_URL,
        redis_prefix=f"ct:test:{test_id}:",
        clickhouse_url=CLICKHOUSE_URL.rsplit("/", 1)[0] + f"/ct_test_{test_id}",
        admin_token="admin-test-token",
        secret_key="test-secret-" + test_id,
        data_dir=tmp_path_factory.mktemp("fuzz") / "data",
    )
    backend = NativeClickHouse(conf.clickhouse_url)
    migrate(backend, log=lambda *_: None)
    server = ServeProcess(conf)
    admin = {"authorization": "Bearer admin-test-token"}
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            registered = client.post("/api/merchants", json=MERCHANT, headers=admin)
            assert registered.status_code == 201, registered.text
            keys = {
                who: client.post("/api/keys", json={f"{who}_id": subject}, headers=admin).json()["key"]
                for who, subject in (("merchant", "brand1"), ("creator", "alice"))
            }
            link = client.post(
                "/api/links",
                json={"url": "https://shop.brand1.example/p/1", "creator_id": "alice"},
                headers=admin,
            ).json()
        headers = {"admin": admin, **{who: {"authorization": f"Bearer {k}"} for who, k in keys.items()}}
        subjects = {"merchant_id": "brand1", "creator_id": "alice", "code": link["code"]}
        live = Live(server, headers, subjects, registered.json()["webhook_secret"])
        order = {"type": "order.created", "data": {"order_id": "A-1", "currency": "EUR",
                 "occurred_at": "2026-11-27T10:00:00Z",
                 "items": [{"sku": "S-1", "unit_price_minor": 500, "quantity": 1}]}}  # fmt: skip
        accepted = post_signed(live, json.dumps(order).encode())
        assert accepted.status_code == 202, accepted.text  # the signing below is right
        yield live
    finally:
        server.stop()
        client = redis.Redis.from_url(conf.redis_url)
        found = list(client.scan_iter(match=conf.redis_prefix + "*", count=1000))
        for start in range(0, len(found), 500):
            client.delete(*found[start : start + 500])
        client.close()
        backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
        backend.close()


def test_the_document_is_served_without_credentials(live: Live) -> None:
    served = httpx.get(live.server.url + "/api/openapi.json", timeout=10)
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == json.loads(SPEC.read_text()), "regenerate: python -m redirector.openapi"


@SCHEMA.parametrize()
@SCHEMA.given(who=st.sampled_from(["admin", "merchant", "creator", "nobody"]), real=st.booleans())
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize="CLICKTRAIL_TEST_FUZZ_EXAMPLES" not in os.environ,
)
def test_the_api_answers_as_documented(case, live: Live, who: str, real: bool) -> None:
    if real and case.path_parameters:
        # Half the requests name subjects that exist, so that they get past the 404s to the handlers.
        for name in case.path_parameters:
            if name in live.subjects:
                case.path_parameters[name] = live.subjects[name]
    if real and case.operation.path == "/webhooks/orders/{merchant_id}":
        case.validate_response(signed_webhook(case, live), checks=CHECKS)
        return
    headers = live.headers.get(who, {})
    case.call_and_validate(base_url=live.server.url, headers=headers, checks=CHECKS, timeout=10)
