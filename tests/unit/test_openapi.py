"""The OpenAPI document: valid OpenAPI 3.1, equal to the checked-in docs/openapi.json, and describing
exactly the routes the app serves (a route added without a description in redirector/apidoc.py, or a
description left after its route is gone, fails here). The served copy is checked in
tests/integration/test_api_fuzz.py."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from redirector import apischemas, linkfields, openapi
from redirector.app import api_routes

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


async def _handler(request):  # never called: only its route is looked at
    raise AssertionError


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = openapi.document(api_routes())
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def _patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


def test_every_pattern_is_an_ecma_regex() -> None:
    """JSON Schema patterns are ECMA-262: msgspec writes a Meta pattern as Python's `\\A ... \\Z`, which
    an OpenAPI tool refuses or reads as literal A and Z (`"AxZ"` matched a currency)."""
    patterns = _patterns(openapi.document(api_routes()))
    assert len(patterns) > 10
    for pattern in patterns:
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern})  # raises on a non-ECMA regex


def test_docs_openapi_json_is_current() -> None:
    assert json.loads(CHECKED_IN.read_text()) == openapi.document(api_routes()), (
        "regenerate: python -m redirector.openapi > docs/openapi.json"
    )


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (Route("/api/widgets", _handler, methods=["GET"]), "('GET', '/api/widgets')"),
        (Route("/api/widgets/{widget_id}", _handler, methods=["DELETE"]), "/api/widgets/{widget_id}"),
        (Route("/api/links", _handler, methods=["PUT"]), "('PUT', '/api/links')"),
        (Route("/metrics", _handler, methods=["POST"]), "('POST', '/metrics')"),
    ],
)
def test_a_route_without_a_description_fails(extra: Route, named: str) -> None:
    with pytest.raises(openapi.UndescribedRoutes, match="describe these routes") as raised:
        openapi.document([*api_routes(), extra])
    assert named in str(raised.value)
    # The server still starts and serves the document without it.
    served = openapi.document([*api_routes(), extra], strict=False)["paths"].get(extra.path, {})
    assert not {m.lower() for m in extra.methods or ()} - {"head"} <= set(served)


@pytest.mark.parametrize("gone", ["/api/links/{code}", "/webhooks/orders/{merchant_id}", "/api/fx"])
def test_a_description_without_a_route_fails(gone: str) -> None:
    routes = [r for r in api_routes() if getattr(r, "path", None) != gone]
    with pytest.raises(openapi.UndescribedRoutes, match="have no route") as raised:
        openapi.document(routes)
    assert gone in str(raised.value)


@pytest.mark.parametrize("path", ["/dash", "/dash/creators/{creator_id}", "/dashboard"])
def test_dashboard_pages_are_left_out_by_prefix(path: str) -> None:
    doc = openapi.document([*api_routes(), Route(path, _handler, methods=["GET"])])
    assert path not in doc["paths"]


def test_redirect_and_security_are_described() -> None:
    doc = openapi.document(api_routes())
    redirect = doc["paths"]["/{code}"]
    assert set(redirect) == {"get", "head"}
    assert "Location" in redirect["get"]["responses"]["302"]["headers"]
    assert {"adminToken", "merchantKey", "creatorKey", "webhookSignature"} <= set(
        doc["components"]["securitySchemes"]
    )
    webhook = doc["paths"]["/webhooks/orders/{merchant_id}"]["post"]
    assert set(webhook["security"][0]) == {"webhookId", "webhookTimestamp", "webhookSignature"}
    assert doc["paths"]["/api/openapi.json"]["get"]["security"] == []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if op["security"]:
                assert "401" in op["responses"], (method, path)
            if "requestBody" in op:
                assert {"400", "413"} <= set(op["responses"]), (method, path)


@pytest.mark.parametrize(
    ("table", "schemas"),
    [(linkfields.FIELDS, apischemas.LINK_FIELDS), (apischemas.policy.SETTABLE, apischemas.MERCHANT_SETTABLE)],
)
def test_a_field_added_to_a_table_without_a_schema_fails(monkeypatch, table, schemas) -> None:
    assert set(table) == set(schemas)
    monkeypatch.setitem(table, "new_field", lambda value: value)
    with pytest.raises(KeyError, match="new_field"):
        apischemas.components()
