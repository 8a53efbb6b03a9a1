"""HTTP routes of the attribution side: merchants, secrets, catalog, rates, earnings and order webhooks.
Mounted by the app (`routes()`); handlers take shared resources from `request.app.state.ctx`."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import msgspec
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request
from starlette.routing import Route

from attribution import (
    audience,
    catalog,
    currency,
    debugger,
    explain,
    figures,
    merchant_api,
    money,
    moneyapi,
    report,
    search,
    webhooks,
)
from attribution.merchants import DomainTaken, InvalidMerchant, Merchant, new_secret, public_view, validate
from attribution.rates import RatesUpdate
from core import queries
from core import validate as checks
from core.clickhouse import ClickHouseError
from core.clock import now_ms as clock_ms
from core.errors import ApiError, error_response, json_response, read_body, read_json, refuse_repeated_keys
from core.redisclient import ReplicasBehind

# A full PUT (5,000 products) with typical fields is 1-3 MiB; its bounds are found in one ~5 ms pass.
MAX_CATALOG_BODY_BYTES = 8 * 1024 * 1024
log = logging.getLogger(__name__)
# Catalog writes, searches and rate changes one worker runs at once; more wait their turn. Each runs in
# sub-millisecond steps with pauses between (catalog.py), so the management API takes a bounded share of
# the loop that answers redirects, however many clients call it.
MAX_CONCURRENT_HEAVY_API = 2


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.webhooks = Counter(
            "clicktrail_webhooks",
            "Order webhook deliveries by result (accepted, duplicate, or the refusal reason)",
            ["result"],
            registry=registry,
        )


def _decode(data: object, kind):
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "invalid", str(exc)) from None


async def _merchant_or_404(ctx, merchant_id: str) -> Merchant:
    merchant = await ctx.merchants.get(merchant_id)
    if merchant is None:
        raise ApiError(404, "unknown_merchant", f"no merchant {merchant_id!r}")
    return merchant


async def create_merchant(request: Request):
    ctx = request.app.state.ctx
    (await ctx.auth.authenticate(request)).require_admin()
    body = await read_json(request)
    # Admin only (this route is): take over domains that overlap other merchants' (attribution/domains.py).
    transfer = body.pop("transfer_domains", False) if isinstance(body, dict) else False
    if not isinstance(transfer, bool):
        raise ApiError(422, "invalid", "transfer_domains must be true or false")
    if isinstance(body, dict) and "policies" in body:  # the policy history is kept by the server
        raise ApiError(422, "invalid", "policies cannot be set; send attribution_priority and review")
    try:
        merchant = validate(_decode(body, Merchant))
    except InvalidMerchant as exc:
        raise ApiError(422, exc.code, str(exc)) from None
    now_ms = clock_ms()
    merchant = msgspec.structs.replace(merchant, created_at_ms=now_ms)
    store = ctx.merchants
    secret = new_secret()
    try:
        # The record, its first rate version and its secret in one transaction: never one without the rest.
        transferred = await store.register(merchant, transfer, now_ms, secret=secret)
    except DomainTaken as exc:
        raise ApiError(409, "domain_taken", str(exc)) from None
    if transferred is None:
        # The claim below runs after the registration committed; if it was cut short (a Redis error), the
        # retry of the same registration finishes it (claims are idempotent) before saying it exists.
        existing = await store.get(merchant.merchant_id)
        await _claim(ctx, existing.domains if existing else [])
        raise ApiError(409, "merchant_exists", f"merchant {merchant.merchant_id!r} exists")
    claimed = await _claim(ctx, merchant.domains)
    return json_response(
        {
            **public_view(merchant),
            "webhook_secret": secret,
            "claimed_links": claimed,
            "transferred": [o.as_dict() for o in transferred],
        },
        201,
    )


async def _claim(ctx, domains: list[str]) -> int:
    """Links made before the brand joined now carry its id and click parameter (unless they lie under a
    more specific domain of another merchant); returns how many changed."""
    claimed = 0
    for host in domains:
        claimed += await ctx.links.claim_host(host, ctx.owners)
    return claimed


async def rotate_secret(request: Request):
    ctx = request.app.state.ctx
    merchant_id = request.path_params["merchant_id"]
    (await ctx.auth.authenticate(request)).require_merchant(merchant_id)
    await _merchant_or_404(ctx, merchant_id)
    secret, old_expiry_ms = await ctx.merchants.add_secret(merchant_id, clock_ms())
    return json_response({"webhook_secret": secret, "previous_secrets_expire_at_ms": old_expiry_ms}, 201)


async def put_catalog(request: Request):
    """Upsert products. The body is read as it comes, its products found in one fast pass and then decoded,
    checked and written a chunk at a time (catalog.py), so a full PUT never holds the loop for long."""
    ctx = request.app.state.ctx
    merchant_id = request.path_params["merchant_id"]
    (await ctx.auth.authenticate(request)).require_merchant(merchant_id)
    await _merchant_or_404(ctx, merchant_id)
    body = await read_body(request, MAX_CATALOG_BODY_BYTES)
    upserted, version = await upsert_catalog(ctx, merchant_id, body)
    return json_response({"upserted": upserted, "rate_version": version})


async def upsert_catalog(ctx, merchant_id: str, body: bytes) -> tuple[int, int]:
    """Check and write the products of a catalog body (the API's PUT and the dashboard's product form):
    (products upserted, rate version). Every refusal is an ApiError naming the reason; nothing of a
    refused body is written."""
    store = ctx.catalog
    try:
        async with ctx.heavy_api:
            raws = catalog.split_body(body)
            # Up to a few MB of JSON scanned a second time: off the loop, which redirects share.
            await asyncio.to_thread(refuse_repeated_keys, body)
            products = await catalog.decode_products(raws)
            version = await store.upsert(merchant_id, products, clock_ms())
    except msgspec.ValidationError as exc:  # a DecodeError too: caught first
        raise ApiError(422, "invalid", f"body must be a list of products: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    except catalog.CatalogTooLarge as exc:
        raise ApiError(413, exc.code, str(exc)) from None
    except catalog.CatalogBusy as exc:
        raise ApiError(409, "catalog_busy", str(exc)) from None
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    return len(products), version.version


async def put_rates(request: Request):
    ctx = request.app.state.ctx
    merchant_id = request.path_params["merchant_id"]
    (await ctx.auth.authenticate(request)).require_merchant(merchant_id)
    await _merchant_or_404(ctx, merchant_id)
    version = await set_rates(ctx, merchant_id, await read_json(request))
    return json_response({"rate_version": version.version, "effective_ms": version.effective_ms})


async def set_rates(ctx, merchant_id: str, data: object):
    """Check and store a rates update (the API's PUT and the dashboard's rates form): the new version, or
    an ApiError (422) naming the bad field, nothing stored."""
    update = _decode(data, RatesUpdate)
    try:
        async with ctx.heavy_api:
            return await ctx.rates.set_rates(merchant_id, clock_ms(), update)
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc)) from None


async def get_catalog(request: Request):
    """One page of products with the rate a creator earns on each. Scope: a creator key sees every catalog
    at its own rates only; a merchant key sees only its own catalog (at the rates of any creator it names,
    which are its own rates); the admin sees anything."""
    ctx = request.app.state.ctx
    principal = await ctx.auth.authenticate(request)
    params = request.query_params
    try:
        query = search.parse_query(params.get("q", ""), params.get("category", ""), params.get("limit", ""))
        cursor = search.decode_cursor(params.get("cursor", ""))
        merchant_id = search.check_id(params["merchant_id"], "merchant_id") if "merchant_id" in params else ""
        creator_id = search.check_id(params["creator_id"], "creator_id") if "creator_id" in params else ""
    except search.BadQuery as exc:
        raise ApiError(400, "bad_query", str(exc)) from None
    if principal.kind == "creator":
        if creator_id and creator_id != principal.subject_id:
            raise ApiError(403, "forbidden", "a creator key sees only its own rates")
        creator_id = principal.subject_id or ""
    elif principal.kind == "merchant":
        if merchant_id and merchant_id != principal.subject_id:
            raise ApiError(403, "forbidden", "a merchant key sees only its own catalog")
        merchant_id = principal.subject_id or ""
    if merchant_id:
        merchant_ids = [merchant_id]
    else:
        merchant_ids = [m.decode() for m in await ctx.redis.smembers(ctx.keys.merchants)]
    async with ctx.heavy_api:
        store = ctx.catalog
        products, next_cursor = await store.search(merchant_ids, query, creator_id, cursor)
    return json_response({"products": products, "next_cursor": next_cursor})


async def get_earnings(request: Request):
    ctx = request.app.state.ctx
    creator_id = request.path_params["creator_id"]
    (await ctx.auth.authenticate(request)).require_creator(creator_id)
    params = request.query_params
    try:
        start, end = report.day_range(params.get("from"), params.get("to"), datetime.now(UTC).date())
    except report.BadRange as exc:
        raise ApiError(400, "bad_date", str(exc)) from None
    try:
        rows = await report.earnings(ctx.clickhouse(), start, end, creator_id)
    except ClickHouseError as exc:
        return figures.unavailable("earnings", exc)
    except report.SumOutOfRange as exc:
        raise ApiError(422, "sum_out_of_range", str(exc)) from None
    body = {
        "creator_id": creator_id,
        "from": str(start),
        "to": str(end),
        "clicks": rows[0].clicks if rows else 0,
        "currencies": [r.as_dict() for r in rows if r.currency],
    }
    if "in" in params:
        body["converted"] = await moneyapi.converted(ctx, rows, params["in"], clock_ms())
    return json_response(body)


async def get_clicks(request: Request):
    """A creator's audience over `from`..`to` (default: the last 30 days): clicks per day, human and bot,
    and the top countries and devices of the human clicks (attribution/audience.py; the dashboard's
    overview shows the same figures)."""
    ctx = request.app.state.ctx
    creator_id = request.path_params["creator_id"]
    (await ctx.auth.authenticate(request)).require_creator(creator_id)
    start, end = figures.clicks_range(request.query_params, datetime.now(UTC).date())
    codes = await ctx.links.codes_of(creator_id, audience.MAX_BREAKDOWN_LINKS)
    try:
        seen = await audience.audience(ctx.clickhouse(), creator_id, codes, start, end)
    except ClickHouseError as exc:
        return figures.unavailable("clicks", exc)
    return figures.answer(figures.CreatorClicks, seen.as_dict())


def order_rows(ledger: list) -> list[dict]:
    """Ledger rows (queries.creator_orders) grouped by order, each row with its explanation in words."""
    orders: dict[tuple[str, str], list[dict]] = {}
    for row in ledger:
        orders.setdefault((row.merchant_id, row.order_id), []).append(
            {
                "entry_id": row.entry_id,
                "kind": row.kind,
                "status": row.status,
                "amount_minor": row.amount_minor,
                "currency": row.currency,
                "sku": row.sku,
                "quantity": row.quantity,
                "basis_minor": row.basis_minor,
                "rate_bps": row.rate_bps,
                "rate_rule": row.rate_rule,
                "rate_version": row.rate_version,
                "reason": row.reason,
                "explanation": explain.sentence(row),
            }
        )
    return [{"merchant_id": m, "order_id": o, "rows": rows} for (m, o), rows in orders.items()]


async def get_orders(request: Request):
    """A creator's latest orders with effect since `from` (default: 30 days ago), each with every ledger
    row and its explanation; the dashboard's earnings page shows the same."""
    ctx = request.app.state.ctx
    creator_id = request.path_params["creator_id"]
    (await ctx.auth.authenticate(request)).require_creator(creator_id)
    today = datetime.now(UTC).date()
    default_from = str(today - timedelta(days=audience.DEFAULT_DAYS - 1))
    try:
        start, _ = report.day_range(request.query_params.get("from", default_from), None, today)
    except report.BadRange as exc:
        raise ApiError(400, "bad_date", str(exc)) from None
    try:
        ledger = await asyncio.to_thread(
            queries.creator_orders, ctx.clickhouse(), creator_id, start, figures.CREATOR_ORDERS_SHOWN
        )
    except ClickHouseError as exc:
        return figures.unavailable("orders", exc)
    body = {"creator_id": creator_id, "from": str(start), "orders": order_rows(ledger)}
    return figures.answer(figures.CreatorOrders, body)


# The metric label of a refusal whose error code differs from it (the others are labelled by their code).
_REFUSAL_LABELS = {"body_too_large": "too_large", "webhook_id_reused": "conflict"}


async def order_webhook(request: Request):
    """The one outcome path of an order webhook: every answer is counted in
    `clicktrail_webhooks_total{result}` and, for a known merchant, recorded for its debugger
    (debugger.py: result, reason, webhook-id, body hash and size; never the body)."""
    ctx = request.app.state.ctx
    merchant_id = request.path_params["merchant_id"]
    seen = debugger.Delivery(at_ms=clock_ms(), webhook_id=request.headers.get("webhook-id", ""))
    known = False
    try:
        merchant = await ctx.merchants.get(merchant_id)
        known = merchant is not None
        if merchant is None:
            raise ApiError(404, "unknown_merchant", f"no merchant {merchant_id!r}")
        label, response = await _order_webhook(request, ctx, merchant, seen)
        seen.result, seen.reason, seen.status = label, label, response.status_code
    except ApiError as exc:
        label = _REFUSAL_LABELS.get(exc.code, exc.code)
        seen.refused(exc.status, exc.code, label, exc.message)
        response = error_response(exc.status, exc.code, exc.message)
    ctx.attribution_metrics.webhooks.labels(label).inc()
    if known:
        if seen.size_bytes is None:
            seen.size_bytes = checks.content_length(request.headers.get("content-length", ""))
        await ctx.webhook_log.record(merchant_id, seen)
    return response


async def _order_webhook(request: Request, ctx, merchant: Merchant, seen: debugger.Delivery):
    """(result label, response) for an accepted or duplicate delivery; raises ApiError on a refusal."""
    merchant_id = merchant.merchant_id
    body = await read_body(request, webhooks.MAX_BODY_BYTES)
    seen.saw_body(body)
    now_ms = seen.at_ms
    secrets = await ctx.merchants.active_secrets(merchant_id, now_ms)
    refusal = webhooks.verify(body, request.headers, secrets, now_ms // 1000)
    if refusal is not None:
        detail = webhooks.WEBHOOK_ID_RULE if refusal == webhooks.BAD_WEBHOOK_ID else refusal.replace("_", " ")
        raise ApiError(401, refusal, "webhook signature verification failed: " + detail)
    seen.signed = True
    try:
        parsed = webhooks.parse(body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed", str(exc)) from None
    ahead = webhooks.future_refusal(parsed, now_ms)
    if ahead is not None:
        raise ApiError(400, webhooks.OCCURRED_IN_FUTURE, f"an order cannot be dated in the future: {ahead}")
    problem = webhooks.amount_refusal(parsed)
    if problem is not None:
        raise ApiError(400, money.REASON_AMOUNT_OUT_OF_RANGE, f"cannot be booked exactly: {problem}")
    accepted = merchant.accepted_currencies()
    if parsed.data.currency not in accepted:
        raise ApiError(
            400,
            currency.REASON_UNSUPPORTED_CURRENCY,
            f"currency {parsed.data.currency!r} is not one this merchant accepts: {', '.join(accepted)}",
        )
    webhook_id = request.headers["webhook-id"]
    try:
        result = await ctx.acceptor.accept(merchant_id, webhook_id, body, now_ms)
    except ReplicasBehind as exc:  # stored on the primary only: the merchant's retry makes it durable
        raise ApiError(503, "replicas_behind", f"not yet replicated, send it again: {exc}") from None
    if result == webhooks.CONFLICT:
        raise ApiError(409, "webhook_id_reused", "this webhook-id was delivered before with another body")
    if result == webhooks.DUPLICATE:
        return "duplicate", json_response({"status": "duplicate"}, 200)
    return "accepted", json_response({"status": "accepted"}, 202)


def routes() -> list[Route]:
    return [
        Route("/api/merchants", create_merchant, methods=["POST"]),
        Route("/api/merchants/{merchant_id}/secrets", rotate_secret, methods=["POST"]),
        Route("/api/merchants/{merchant_id}/catalog", put_catalog, methods=["PUT"]),
        Route("/api/merchants/{merchant_id}/rates", put_rates, methods=["PUT"]),
        Route("/api/catalog", get_catalog, methods=["GET"]),
        Route("/api/creators/{creator_id}/earnings", get_earnings, methods=["GET"]),
        Route("/api/creators/{creator_id}/clicks", get_clicks, methods=["GET"]),
        Route("/api/creators/{creator_id}/orders", get_orders, methods=["GET"]),
        Route("/webhooks/orders/{merchant_id}", order_webhook, methods=["POST"]),
        # A merchant's stored URL may end in a slash: answered (and counted, and in its debugger) as the
        # same endpoint. Other routes answer a trailing slash with 404 (redirector/app.py).
        Route("/webhooks/orders/{merchant_id}/", order_webhook, methods=["POST"], include_in_schema=False),
        *merchant_api.routes(),
        *moneyapi.routes(),
    ]
