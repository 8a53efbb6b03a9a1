"""HTTP routes of events out and the webhook debugger: `/api/endpoints` (register, list, show, delete,
replay) and `GET /api/merchants/{id}/deliveries`. Scoped like API keys: a creator key acts for its
creator, a merchant key for its merchant, the admin for either (naming which in the body or query)."""

from __future__ import annotations

import contextlib
import re

from starlette.requests import Request
from starlette.routing import Route

from attribution import debugger, endpoints
from attribution.endpoints import Endpoint, EndpointError
from core import validate
from core.clock import NotATime, parse_iso_ms
from core.clock import now_ms as clock_ms
from core.errors import ApiError, json_response, parse_json, read_body, read_json

ENDPOINT_FIELDS = frozenset({"url", "events", "description", "creator_id", "merchant_id"})
ENDPOINT_ID_RE = re.compile(r"ep_[0-9a-f]{24}")
DEFAULT_DELIVERIES = 50
DEAD_LETTERS_SHOWN = 20
MAX_REPLAY_BODY_BYTES = 1024


def _owner_of(principal, body: dict) -> str:
    """`creator:<id>` or `merchant:<id>`: the key's own subject, or for the admin the one it names."""
    named = [k for k in ("creator_id", "merchant_id") if body.get(k) is not None]
    if principal.is_admin:
        if len(named) != 1:
            raise ApiError(
                422, "invalid_scope", 'the admin names exactly one of "creator_id" or "merchant_id"'
            )
        kind = named[0].removesuffix("_id")
        subject = body[named[0]]
        if not validate.is_id(subject):
            raise ApiError(422, "invalid_id", f"{named[0]} must be 1-64 characters of A-Z a-z 0-9 _ -")
        return f"{kind}:{subject}"
    for key in named:
        if key != f"{principal.kind}_id" or body[key] != principal.subject_id:
            raise ApiError(403, "forbidden", f"this key may not act for {key} {body[key]!r}")
    return f"{principal.kind}:{principal.subject_id}"


async def create_endpoint(request: Request):
    ctx = request.app.state.ctx
    principal = await ctx.auth.authenticate(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_body", "body must be a JSON object")
    unknown = sorted(set(body) - ENDPOINT_FIELDS)
    if unknown:
        raise ApiError(422, "unknown_fields", f"unknown fields {unknown}")
    owner = _owner_of(principal, body)
    kind, _, subject = owner.partition(":")
    if kind == "merchant" and await ctx.merchants.get(subject) is None:
        raise ApiError(404, "unknown_merchant", f"no merchant {subject!r}")
    settings = ctx.settings
    try:
        url = endpoints.check_url(
            body.get("url"), settings.endpoints_allow_http, settings.endpoints_allow_private
        )
        events = endpoints.check_events(body.get("events"))
        description = endpoints.check_description(body.get("description"))
    except EndpointError as exc:
        raise ApiError(422, exc.code, str(exc)) from None
    endpoint = endpoints.new_endpoint(owner, url, events, description, clock_ms())
    if not await ctx.endpoints.create(endpoint):
        raise ApiError(
            409, "too_many_endpoints", f"at most {endpoints.MAX_ENDPOINTS_PER_OWNER} endpoints per owner"
        )
    return json_response({**endpoints.public_view(endpoint), "secret": endpoint.secret}, 201)


async def list_endpoints(request: Request):
    ctx = request.app.state.ctx
    principal = await ctx.auth.authenticate(request)
    params = dict(request.query_params)
    if principal.is_admin and not (params.keys() & {"creator_id", "merchant_id"}):
        found = await ctx.endpoints.all()
    else:
        found = await ctx.endpoints.of_owner(_owner_of(principal, params))
    return json_response({"endpoints": [endpoints.public_view(e) for e in found]})


async def _owned(request: Request) -> tuple[object, Endpoint]:
    ctx = request.app.state.ctx
    principal = await ctx.auth.authenticate(request)
    endpoint_id = request.path_params["endpoint_id"]
    found = await ctx.endpoints.get(endpoint_id) if ENDPOINT_ID_RE.fullmatch(endpoint_id) else None
    if found is None:
        raise ApiError(404, "not_found", "no endpoint with this id")
    if not principal.is_admin and found.owner != f"{principal.kind}:{principal.subject_id}":
        raise ApiError(403, "forbidden", "this key may not act for this endpoint's owner")
    return ctx, found


async def get_endpoint(request: Request):
    ctx, endpoint = await _owned(request)
    queued, dead, state = await ctx.outbox.counts(endpoint.id)
    delivery = {
        "queued": queued,
        "dead_lettered": dead,
        "failed_attempts": int(state.get("attempts", 0)),
        "next_attempt_ms": int(state["next_attempt_ms"]) if "next_attempt_ms" in state else None,
        "last_error": state.get("last_error"),
        "dead_letters": await ctx.outbox.dead_letters(endpoint.id, DEAD_LETTERS_SHOWN),
    }
    return json_response({**endpoints.public_view(endpoint), "delivery": delivery})


async def delete_endpoint(request: Request):
    ctx, endpoint = await _owned(request)
    await ctx.endpoints.delete(endpoint)
    return json_response({"id": endpoint.id, "deleted": True})


def parse_since(raw: object) -> int | None:
    """`since`: absent, milliseconds since the epoch, or an ISO 8601 time with its zone."""
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 2**47:
        return raw
    if isinstance(raw, str):
        with contextlib.suppress(NotATime):
            ms = parse_iso_ms(raw)
            if 0 <= ms < 2**47:  # the instant in UTC, as the integer form: a stream id's bounds
                return ms
    raise ApiError(422, "invalid_since", "since must be milliseconds or an ISO 8601 time with a zone")


async def replay_endpoint(request: Request):
    ctx, endpoint = await _owned(request)
    raw = await read_body(request, MAX_REPLAY_BODY_BYTES)
    body = parse_json(raw) if raw.strip() else {}
    if not isinstance(body, dict) or set(body) - {"since"}:
        raise ApiError(422, "invalid", 'body must be {} or {"since": ...}')
    since_ms = parse_since(body.get("since"))
    dead, past = await ctx.outbox.replay(endpoint, since_ms)
    return json_response({"id": endpoint.id, "requeued_dead_letters": dead, "requeued_events": past})


async def list_deliveries(request: Request):
    ctx = request.app.state.ctx
    merchant_id = request.path_params["merchant_id"]
    (await ctx.auth.authenticate(request)).require_merchant(merchant_id)
    if await ctx.merchants.get(merchant_id) is None:
        raise ApiError(404, "unknown_merchant", f"no merchant {merchant_id!r}")
    params = request.query_params
    limit_raw = params.get("limit", str(DEFAULT_DELIVERIES))
    limit = validate.content_length(limit_raw)  # ASCII digits only
    if limit is None or not 1 <= limit <= debugger.MAX_RECORDS:
        raise ApiError(400, "bad_query", f"limit must be 1..{debugger.MAX_RECORDS}")
    result = params.get("result")
    if result is not None and result not in debugger.RESULTS:
        raise ApiError(400, "bad_query", f"result must be one of {', '.join(debugger.RESULTS)}")
    deliveries = await ctx.webhook_log.latest(merchant_id, limit, result)
    return json_response({"merchant_id": merchant_id, "deliveries": deliveries})


def routes() -> list[Route]:
    return [
        Route("/api/endpoints", create_endpoint, methods=["POST"]),
        Route("/api/endpoints", list_endpoints, methods=["GET"]),
        Route("/api/endpoints/{endpoint_id}", get_endpoint, methods=["GET"]),
        Route("/api/endpoints/{endpoint_id}", delete_endpoint, methods=["DELETE"]),
        Route("/api/endpoints/{endpoint_id}/replay", replay_endpoint, methods=["POST"]),
        Route("/api/merchants/{merchant_id}/deliveries", list_deliveries, methods=["GET"]),
    ]
