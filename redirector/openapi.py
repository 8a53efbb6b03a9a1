"""The OpenAPI 3.1 document of the HTTP API, built from the app's own routes (redirector/app.py), the
descriptions of redirector/apidoc.py and the schemas of redirector/apischemas.py. Served at
`GET /api/openapi.json`; the copy in docs/ is regenerated with

    python -m redirector.openapi > docs/openapi.json

and a test keeps the two equal."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable

from starlette.routing import BaseRoute, Route

from redirector import apischemas
from redirector.apidoc import OPERATIONS, Op

# Routes the JSON API does not include: the dashboard (HTML pages for people, not an integration surface).
EXCLUDED_PREFIXES = ("/dash",)
# Starlette answers HEAD on every GET route by itself; only the redirect documents HEAD (it is recorded).
IMPLICIT_METHODS = frozenset({"HEAD"})
# Handled in front of the router (ClicktrailApp.__call__), so not among its routes.
FRONT_PATHS = frozenset({"/{code}"})
_MEDIA_TYPES = {"text/plain", "text/csv", "image/svg+xml", "image/png"}
_PARAM = re.compile(r"{(\w+)}")
SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's token (CLICKTRAIL_ADMIN_TOKEN): may do everything.",
    },
    "merchantKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`ctk_...`) issued for one merchant: acts for that merchant only.",
    },
    "creatorKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`ctk_...`) issued for one creator: acts for that creator only.",
    },
    "webhookId": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-id",
        "description": "unique per event: 1-256 printable ASCII characters",
    },
    "webhookTimestamp": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-timestamp",
        "description": "Unix seconds; refused beyond 5 minutes of the server's clock",
    },
    "webhookSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-signature",
        "description": "`v1,<base64 HMAC-SHA256>` of `id.timestamp.body` with the merchant's secret",
    },
}
_SCHEME_OF = {"admin": "adminToken", "merchant": "merchantKey", "creator": "creatorKey"}


class UndescribedRoutes(LookupError):
    """Routes without an entry in redirector/apidoc.py OPERATIONS, or entries without a route."""


def route_operations(routes: Iterable[BaseRoute]) -> set[tuple[str, str]]:
    """(method, path) of every API route the document must describe."""
    found = {("GET", "/{code}"), ("HEAD", "/{code}")}
    for route in routes:
        if not isinstance(route, Route) or route.path.startswith(EXCLUDED_PREFIXES):
            continue
        if not route.include_in_schema:  # another spelling of a described route
            continue
        found |= {(method, route.path) for method in route.methods or () if method not in IMPLICIT_METHODS}
    return found


def check_described(routes: Iterable[BaseRoute]) -> None:
    served = route_operations(routes)
    undescribed = sorted(served - OPERATIONS.keys())
    stale = sorted(OPERATIONS.keys() - served)
    if undescribed or stale:
        raise UndescribedRoutes(
            f"describe these routes in redirector/apidoc.py OPERATIONS: {undescribed}; "
            f"these entries have no route: {stale}"
        )


def _schema(ref: str | dict) -> dict:
    return {"$ref": apischemas.REF.format(name=ref)} if isinstance(ref, str) else ref


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _schema("Error")}}}


_ERRORS = {
    400: "malformed request (bad JSON, a bad query parameter, a parameter or JSON key given twice)",
    401: "no valid credentials",
    403: "the key may not act for this subject",
    404: "no such resource",
    409: "conflicts with the current state",
    410: "the link is disabled or expired",
    413: "body too large",
    422: "a field is invalid (the message names it)",
    429: "too many refused credentials from this address; retry after Retry-After seconds",
    503: "a store cannot be reached now; retry (see Retry-After)",
}


def _success(op: Op) -> dict:
    if op.answer == "redirect":
        return {
            "description": "redirect to the destination",
            "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
        }
    if isinstance(op.answer, str) and op.answer in _MEDIA_TYPES:
        return {"description": "OK", "content": {op.answer: {"schema": {"type": "string"}}}}
    schema = {"type": "object"} if op.answer == "object" else _schema(op.answer)
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def _responses(op: Op) -> dict:
    responses = {str(status): _success(op) for status in (op.ok, *op.also_ok)}
    if op.answer == "redirect":
        responses["200"] = {
            "description": "the in-app browser escape page (open_in: browser)",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    statuses = set(op.errors)
    if op.answer != "redirect":
        # A query naming a parameter twice (core/repeats.py); a redirect's query is passed on.
        statuses.add(400)
    if op.auth:
        statuses |= {401, 429, 503}  # 503: the credentials cannot be checked while Redis is out of reach
    if op.body is not None:
        statuses |= {400, 413}
    if op.webhook:
        statuses |= {400, 401, 413}
    for status in sorted(statuses):
        responses[str(status)] = _error(_ERRORS[status])
    if "429" in responses:
        responses["429"]["headers"] = {
            "Retry-After": {
                "description": "seconds until the address may try again",
                "schema": {"type": "integer"},
            }
        }
    return responses


def _operation(method: str, path: str, op: Op) -> dict:
    out: dict = {
        "operationId": method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_"),
        "summary": op.summary,
        "tags": list(op.tags),
        "responses": _responses(op),
    }
    if op.description:
        out["description"] = op.description
    params = [
        {"name": name, "in": "path", "required": True, "schema": apischemas.PATH_PARAMETERS[name]}
        for name in _PARAM.findall(path)
    ]
    params += [
        {
            "name": p.name,
            "in": "query",
            "required": p.required,
            "schema": p.schema,
            "description": p.description,
        }
        for p in op.query
    ]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": _schema(op.body)}},
        }
    if op.webhook:
        out["security"] = [{"webhookId": [], "webhookTimestamp": [], "webhookSignature": []}]
    else:
        out["security"] = [{_SCHEME_OF[who]: []} for who in op.auth]
    return out


def document(routes: Iterable[BaseRoute], strict: bool = True) -> dict:
    """The OpenAPI document of the routes described. Strict (the generator, the tests): raises
    UndescribedRoutes when routes and descriptions disagree. The server is not strict: a route without a
    description is served but left out of the document (tests/unit/test_openapi.py fails on it)."""
    routes = list(routes)
    if strict:
        check_described(routes)
    served = route_operations(routes)
    paths: dict[str, dict] = {}
    described = sorted(OPERATIONS.items(), key=lambda item: (item[0][1], item[0][0]))
    for (method, path), op in described:
        if (method, path) not in served:
            continue
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clicktrail",
            "version": "1",
            "description": "Click redirects and attribution. Guide: docs/api.md. Every error answers "
            '`{"error": {"code": "...", "message": "..."}}` with a 4xx (or 503) status.',
        },
        "paths": paths,
        "components": {"schemas": apischemas.components(), "securitySchemes": SECURITY_SCHEMES},
    }


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    from redirector.app import api_routes  # the app imports this module

    sys.stdout.write(dumps(document(api_routes())))


if __name__ == "__main__":
    main()
