"""HTTP routes for a merchant's attribution terms and disputes: `PATCH /api/merchants/{id}` (policy.py's
table of settable fields), discount codes (codes.py), review decisions (review.py) and the trace of one
order (trace.py). Mounted with the other attribution routes (api.routes)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from attribution import audience, codes, figures, payouts, policy, report, review
from attribution.merchants import Merchant, public_view
from core import queries, validate
from core.clickhouse import ClickHouseError
from core.clock import now_ms as clock_ms
from core.errors import ApiError, json_list, json_pieces_response, json_response, read_json

log = logging.getLogger(__name__)
MAX_RATE_BPS = 10_000


async def _merchant(request: Request) -> tuple[Any, str, Merchant]:
    """The context, the merchant id and its record, after checking the caller may act for it."""
    ctx = request.app.state.ctx
    merchant_id = request.path_params["merchant_id"]
    (await ctx.auth.authenticate(request)).require_merchant(merchant_id)
    merchant = await ctx.merchants.get(merchant_id)
    if merchant is None:
        raise ApiError(404, "unknown_merchant", f"no merchant {merchant_id!r}")
    return ctx, merchant_id, merchant


async def patch_merchant(request: Request):
    ctx, merchant_id, _ = await _merchant(request)
    try:
        changes = policy.checked_patch(await read_json(request))
        updated = await ctx.merchants.patch(merchant_id, changes, clock_ms())
    except policy.InvalidField as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    if updated is None:
        raise ApiError(404, "unknown_merchant", f"no merchant {merchant_id!r}")
    return json_response(public_view(updated))


# --- discount codes --------------------------------------------------------------------------------------
def _code(request: Request) -> str:
    return check_code(request.path_params["code"])


def check_code(code: str) -> str:
    try:
        return codes.check_code(code)
    except codes.InvalidCode as exc:
        raise ApiError(422, "invalid_code", str(exc)) from None


def check_assignment(body: Any) -> tuple[str, int | None]:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid", 'body must be {"creator_id": ..., "rate_bps": optional}')
    unknown = sorted(set(body) - {"creator_id", "rate_bps"})
    if unknown:
        raise ApiError(422, "invalid", f"unknown field {unknown[0]!r}")
    creator_id = body.get("creator_id")
    if not validate.is_id(creator_id):
        raise ApiError(422, "invalid", "creator_id must be 1-64 chars of [A-Za-z0-9_-]")
    rate = body.get("rate_bps")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= MAX_RATE_BPS
    ):
        raise ApiError(422, "invalid", f"rate_bps must be an integer 0-{MAX_RATE_BPS} or absent")
    return creator_id, rate


async def put_code(request: Request):
    ctx, merchant_id, _ = await _merchant(request)
    code = _code(request)
    creator_id, rate = check_assignment(await read_json(request))
    try:
        spans = await codes.CodeStore(ctx.redis, ctx.keys).put(
            merchant_id, code, creator_id, rate, clock_ms()
        )
    except codes.TooManyCodes as exc:
        raise ApiError(409, "too_many_codes", str(exc)) from None
    return json_response(codes.view(spans))


async def delete_code(request: Request):
    ctx, merchant_id, _ = await _merchant(request)
    code = _code(request)
    spans = await codes.CodeStore(ctx.redis, ctx.keys).delete(merchant_id, code, clock_ms())
    if spans is None:
        raise ApiError(404, "unknown_code", f"no active code {code!r}")
    return json_response(codes.view(spans))


async def get_code(request: Request):
    ctx, merchant_id, _ = await _merchant(request)
    code = _code(request)
    spans = await codes.CodeStore(ctx.redis, ctx.keys).get(merchant_id, code)
    if not spans:
        raise ApiError(404, "unknown_code", f"no code {code!r}")
    return json_response(codes.view(spans))


async def code_endpoint(request: Request):
    handlers = {"GET": get_code, "HEAD": get_code, "PUT": put_code, "DELETE": delete_code}
    return await handlers[request.method](request)


async def list_codes(request: Request):
    ctx, merchant_id, _ = await _merchant(request)
    raw = await codes.CodeStore(ctx.redis, ctx.keys).raw_all(merchant_id)
    # Up to 10,000 codes decoded, viewed and encoded in a thread: on the loop they held the server's
    # redirects (10,000 codes of 20 assignments are 25 MB of JSON: 90-205 ms).
    return json_pieces_response(await asyncio.to_thread(_codes_answer, raw))


def _codes_answer(raw: dict[bytes, bytes]) -> list[bytes]:
    # A code at a time, decoded, viewed and dumped: freeing every code's spans and view at once at the end
    # held the GIL, so the event loop, 30 ms for 10,000 codes of 20 assignments (UTF-8 keeps code order).
    return json_list("codes", (codes.view(codes.decode_spans(raw[k])) for k in sorted(raw)))


# --- review and trace ------------------------------------------------------------------------------------
MAX_ORDER_ID_CHARS = 128


def check_order_id(order_id: str) -> str:
    """An order id as a path names it (the API's trace and review, the dashboard's order page)."""
    if (
        not 1 <= len(order_id) <= MAX_ORDER_ID_CHARS
        or validate.has_control_chars(order_id)
        or payouts.is_reserved_order_id(order_id)
    ):
        raise ApiError(
            400,
            "bad_order_id",
            f"order_id must be 1-{MAX_ORDER_ID_CHARS} chars without control characters, not starting with "
            f"{payouts.ORDER_PREFIX!r}",
        )
    return order_id


def _order_id(request: Request) -> str:
    return check_order_id(request.path_params["order_id"])


async def post_review(request: Request):
    """Idempotent: the same decision again answers the same; another decision, or an order with nothing
    in review, is a 409. The next attributor run books it."""
    ctx, merchant_id, _ = await _merchant(request)
    order_id = _order_id(request)
    body = await read_json(request)
    decision = body.get("decision") if isinstance(body, dict) else None
    if decision not in review.DECISIONS or set(body) != {"decision"}:
        raise ApiError(422, "invalid", 'body must be {"decision": "approve" | "reject"}')
    store = review.ReviewStore(ctx.redis, ctx.keys)
    standing = await store.get(merchant_id, order_id)
    if standing is None:
        try:
            held, _ = await asyncio.to_thread(queries.review_state, ctx.clickhouse(), merchant_id, order_id)
        except ClickHouseError as exc:
            return figures.unavailable("orders", exc)
        if held <= 0:
            raise ApiError(409, "nothing_in_review", f"order {order_id!r} has nothing in review")
        standing = await store.decide(merchant_id, order_id, decision, clock_ms())
    if standing.decision != decision:
        raise ApiError(409, "already_decided", f"order {order_id!r} was already decided: {standing.decision}")
    return json_response({"order_id": order_id, **standing.as_dict()})


async def get_trace(request: Request):
    """Merchant key or admin; a creator key too, for an order credited to that creator (another order,
    known or not, is a 403 decided before the trace's costly reads: Attributor.explain's `reader`)."""
    ctx = request.app.state.ctx
    merchant_id = request.path_params["merchant_id"]
    principal = await ctx.auth.authenticate(request)
    if principal.kind != "creator":
        principal.require_merchant(merchant_id)
    reader = (principal.subject_id or "") if principal.kind == "creator" else None
    order_id = _order_id(request)
    from attribution.attributor import Attributor  # the server loads it only when a trace is asked for

    try:
        found = await Attributor(ctx.redis, ctx.keys, ctx.clickhouse(), ctx.ids).explain(
            merchant_id, order_id, reader=reader
        )
    except ClickHouseError as exc:
        return figures.unavailable("orders", exc)
    if principal.kind == "creator" and (found is None or found.credited_creator != principal.subject_id):
        raise ApiError(403, "forbidden", "a creator key sees only the orders credited to it")
    if found is None:
        raise ApiError(404, "unknown_order", f"no order {order_id!r} of merchant {merchant_id!r}")
    return json_response(found.trace)


# --- the dashboard's figures as JSON ---------------------------------------------------------------------
MAX_LIST = figures.MAX_LIST
# The `limit` of GET /api/merchants/{id}/creators and /orders when none is given.
DEFAULT_CREATORS = 20
DEFAULT_ORDERS = 50


def _limit(request: Request, default: int) -> int:
    limit = validate.query_int(request.query_params.get("limit", str(default)), 1, MAX_LIST)
    if limit is None:
        raise ApiError(400, "bad_query", f"limit must be 1..{MAX_LIST}")
    return limit


async def get_creators(request: Request):
    """The merchant's creators ranked by sales over `from`..`to` (report.merchant_sales)."""
    ctx, merchant_id, _ = await _merchant(request)
    params = request.query_params
    try:
        first, last = report.day_range(params.get("from"), params.get("to"), datetime.now(UTC).date())
    except report.BadRange as exc:
        raise ApiError(400, "bad_date", str(exc)) from None
    limit = _limit(request, DEFAULT_CREATORS)
    try:
        ranked = await asyncio.to_thread(
            report.merchant_sales, ctx.clickhouse(), merchant_id, first, last, limit
        )
    except ClickHouseError as exc:
        return figures.unavailable("sales", exc)
    except report.SumOutOfRange as exc:
        raise ApiError(422, "sum_out_of_range", str(exc)) from None
    body = {"merchant_id": merchant_id, "from": str(first), "to": str(last), "creators": ranked}
    return figures.answer(figures.MerchantCreators, body)


async def get_clicks(request: Request):
    """Clicks per day on the merchant's links over `from`..`to` (default: the last 30 days), human and bot
    (audience.merchant_days: the merchant's dashboard overview shows the same)."""
    ctx, merchant_id, _ = await _merchant(request)
    first, last = figures.clicks_range(request.query_params, datetime.now(UTC).date())
    try:
        days = await asyncio.to_thread(audience.merchant_days, ctx.clickhouse(), merchant_id, first, last)
    except ClickHouseError as exc:
        return figures.unavailable("clicks", exc)
    return figures.answer(
        figures.MerchantClicks,
        {
            "merchant_id": merchant_id,
            "from": str(first),
            "to": str(last),
            "human": sum(h for _, h, _ in days),
            "bots": sum(b for _, _, b in days),
            "days": [{"day": d, "human": h, "bots": b} for d, h, b in days],
        },
    )


async def get_orders(request: Request):
    """The merchant's latest orders with their commission (report.merchant_orders)."""
    ctx, merchant_id, _ = await _merchant(request)
    limit = _limit(request, DEFAULT_ORDERS)
    try:
        found = await asyncio.to_thread(report.merchant_orders, ctx.clickhouse(), merchant_id, limit)
    except ClickHouseError as exc:
        return figures.unavailable("orders", exc)
    return figures.answer(figures.MerchantOrders, {"merchant_id": merchant_id, "orders": found})


def routes() -> list[Route]:
    base = "/api/merchants/{merchant_id}"
    return [
        Route(f"{base}/creators", get_creators, methods=["GET"]),
        Route(f"{base}/orders", get_orders, methods=["GET"]),
        Route(f"{base}/clicks", get_clicks, methods=["GET"]),
        Route(base, patch_merchant, methods=["PATCH"]),
        Route(f"{base}/codes", list_codes, methods=["GET"]),
        # one route per path, so that a 405 lists every method the path takes
        Route(f"{base}/codes/{{code}}", code_endpoint, methods=["GET", "PUT", "DELETE"]),
        Route(f"{base}/orders/{{order_id}}/review", post_review, methods=["POST"]),
        Route(f"{base}/orders/{{order_id}}/trace", get_trace, methods=["GET"]),
    ]
