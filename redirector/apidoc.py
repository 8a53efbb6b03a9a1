"""What each route of the HTTP API means, for the OpenAPI document (openapi.py): the ONE place to describe
a route. A route added to the app without an entry here fails tests/unit/test_openapi.py (and an entry
whose route is gone fails it too), naming the method and path to add.

An entry says who may call it (`auth`), its query parameters, its body (a schema name of apischemas.py),
its success answer and the error statuses it can give. Every error answer has the one JSON shape
`{"error": {"code", "message"}}` (core/errors.py); 401 comes with `auth`, 400 and 413 with a JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attribution import audience, debugger, endpoint_api, figures, merchant_api, search
from redirector import apischemas, qr

# Who may call: "admin" (CLICKTRAIL_ADMIN_TOKEN), "merchant" / "creator" (an API key of that scope, limited
# to its own subject), "any" (any valid key), "webhook" (a merchant's Standard Webhooks signature), or
# "public" (no credentials).
ADMIN, MERCHANT, CREATOR = ("admin",), ("admin", "merchant"), ("admin", "creator")
ANY = ("admin", "merchant", "creator")
PUBLIC: tuple[str, ...] = ()


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict
    description: str
    required: bool = False


@dataclass(frozen=True)
class Op:
    summary: str
    auth: tuple[str, ...]
    ok: int = 200
    also_ok: tuple[int, ...] = ()  # other success statuses, with the same answer
    # A schema name in apischemas.components(), an inline schema, or a media type for non-JSON answers.
    answer: str | dict = "object"
    body: str | dict | None = None
    body_required: bool = True
    errors: tuple[int, ...] = ()
    query: tuple[Param, ...] = ()
    description: str = ""
    tags: tuple[str, ...] = field(default=())
    webhook: bool = False


ID_Q = apischemas.ID
_CREATOR_Q = Param("creator_id", ID_Q, "the creator (a creator key: its own)")
_MERCHANT_Q = Param("merchant_id", ID_Q, "the merchant (a merchant key: its own)")
_OBJ = {"type": "object"}
_DAY = {"type": "string", "format": "date"}
_FROM_30 = Param("from", _DAY, f"first day (UTC; default {audience.DEFAULT_DAYS - 1} days before today)")
_TO = Param("to", _DAY, "last day (UTC; default today)")


def _list_limit(default: int) -> Param:
    return Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": merchant_api.MAX_LIST},
        f"how many, first ones first (default {default})",
    )


_SIZE = Param(
    "size",
    {"type": "integer", "minimum": qr.MIN_SIZE_PX, "maximum": qr.MAX_SIZE_PX},
    f"pixels (default {qr.DEFAULT_SIZE_PX})",
)

# (method, path) -> Op. Paths as the router spells them; `/{code}` is the redirect (redirector/app.py).
OPERATIONS: dict[tuple[str, str], Op] = {
    ("GET", "/{code}"): Op(
        "Follow a short link",
        PUBLIC,
        ok=302,
        answer="redirect",
        errors=(404, 410, 503),
        description="302 to the destination with the click id in the merchant's parameter "
        "(`Cache-Control: private, no-store`); an in-app browser on an `open_in: browser` link gets a "
        "small HTML page instead (200). 404 unknown code, 410 disabled or expired without `expired_url`, "
        "503 when links cannot be looked up. Any other method: 405 with `Allow: GET, HEAD`.",
        tags=("redirect",),
    ),
    ("HEAD", "/{code}"): Op(
        "Follow a short link (HEAD)",
        PUBLIC,
        ok=302,
        answer="redirect",
        errors=(404, 410, 503),
        description="As GET, without a body; recorded as HEAD (never billable).",
        tags=("redirect",),
    ),
    ("GET", "/healthz"): Op("Liveness", PUBLIC, answer="Health", tags=("operations",)),
    ("GET", "/readyz"): Op(
        "Readiness: a click can be recorded (Redis or the spool)",
        PUBLIC,
        answer="Ready",
        errors=(503,),
        tags=("operations",),
    ),
    ("GET", "/metrics"): Op("Prometheus metrics", PUBLIC, answer="text/plain", tags=("operations",)),
    ("GET", "/api/openapi.json"): Op("This document", PUBLIC, answer=_OBJ, tags=("operations",)),
    # --- keys and links
    ("POST", "/api/keys"): Op(
        "Issue an API key for one creator or one merchant (shown once)",
        ADMIN,
        ok=201,
        answer="Key",
        body="KeyCreate",
        errors=(403, 404, 422),
        tags=("keys",),
    ),
    ("GET", "/api/keys"): Op(
        "The keys of one creator or one merchant (their ids, never the keys)",
        ADMIN,
        answer={
            "type": "object",
            "required": ["keys"],
            "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/KeyInfo"}}},
        },
        errors=(403, 422),
        query=(
            Param("creator_id", ID_Q, "the creator (give this or merchant_id)"),
            Param("merchant_id", ID_Q, "the merchant (give this or creator_id)"),
        ),
        description="Oldest first. Keys issued by a release before the per-subject lists are listed once "
        "`clicktrail keys reindex` has run; a key's id is its SHA-256 in lowercase hex.",
        tags=("keys",),
    ),
    ("DELETE", "/api/keys/{key_id}"): Op(
        "Revoke an API key (its next request answers 401)",
        ADMIN,
        answer="KeyInfo",
        errors=(403, 404, 422),
        tags=("keys",),
    ),
    ("POST", "/api/links"): Op(
        "Create a short link",
        CREATOR,
        ok=201,
        answer="Link",
        body="LinkCreate",
        errors=(403, 409, 422, 503),
        tags=("links",),
    ),
    ("GET", "/api/links"): Op(
        "A creator's links",
        CREATOR,
        answer={
            "type": "object",
            "required": ["links"],
            "properties": {"links": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}}},
        },
        errors=(403, 422),
        query=(Param("creator_id", ID_Q, "the creator", required=True),),
        tags=("links",),
    ),
    ("GET", "/api/links/{code}"): Op(
        "A link with its all-time totals", CREATOR, answer="Link", errors=(403, 404), tags=("links",)
    ),
    ("PATCH", "/api/links/{code}"): Op(
        "Change a link (null clears a smart-link field)",
        CREATOR,
        answer="Link",
        body="LinkPatch",
        errors=(403, 404, 409, 422),
        tags=("links",),
    ),
    ("DELETE", "/api/links/{code}"): Op(
        "Disable a link (it answers 410 from then on)",
        CREATOR,
        answer="Link",
        errors=(403, 404),
        tags=("links",),
    ),
    ("GET", "/api/links/{code}/qr.svg"): Op(
        "QR code of the short URL",
        CREATOR,
        answer="image/svg+xml",
        errors=(400, 403, 404),
        query=(_SIZE,),
        tags=("links",),
    ),
    ("GET", "/api/links/{code}/qr.png"): Op(
        "QR code of the short URL",
        CREATOR,
        answer="image/png",
        errors=(400, 403, 404),
        query=(_SIZE,),
        tags=("links",),
    ),
    # --- merchants
    ("POST", "/api/merchants"): Op(
        "Register a merchant (answers its first webhook secret)",
        ADMIN,
        ok=201,
        answer="MerchantCreated",
        body="MerchantCreate",
        errors=(403, 409, 422),
        tags=("merchants",),
    ),
    ("PATCH", "/api/merchants/{merchant_id}"): Op(
        "Change attribution priority, review rules or accepted currencies",
        MERCHANT,
        answer="Merchant",
        body="MerchantPatch",
        errors=(403, 404, 422),
        tags=("merchants",),
    ),
    ("POST", "/api/merchants/{merchant_id}/secrets"): Op(
        "Rotate the webhook secret (the previous ones stay valid for a day)",
        MERCHANT,
        ok=201,
        answer="Secret",
        errors=(403, 404),
        tags=("merchants",),
    ),
    ("PUT", "/api/merchants/{merchant_id}/catalog"): Op(
        'Upsert products (a list, or {"products": [...]})',
        MERCHANT,
        answer="CatalogUpserted",
        body={
            "anyOf": [
                {"type": "array", "items": {"$ref": "#/components/schemas/Product"}},
                {
                    "type": "object",
                    "required": ["products"],
                    "properties": {
                        "products": {"type": "array", "items": {"$ref": "#/components/schemas/Product"}}
                    },
                },
            ]
        },
        errors=(403, 404, 409, 422),
        tags=("merchants",),
    ),
    ("PUT", "/api/merchants/{merchant_id}/rates"): Op(
        "Replace the commission rates",
        MERCHANT,
        answer="RatesSet",
        body="RatesUpdate",
        errors=(403, 404, 422),
        tags=("merchants",),
    ),
    ("GET", "/api/merchants/{merchant_id}/codes"): Op(
        "Discount codes of a merchant", MERCHANT, answer="Codes", errors=(403, 404), tags=("codes",)
    ),
    ("GET", "/api/merchants/{merchant_id}/codes/{code}"): Op(
        "One discount code with its history", MERCHANT, answer="Code", errors=(403, 404, 422), tags=("codes",)
    ),
    ("PUT", "/api/merchants/{merchant_id}/codes/{code}"): Op(
        "Assign a discount code to a creator",
        MERCHANT,
        answer="Code",
        body={
            "type": "object",
            "required": ["creator_id"],
            "additionalProperties": False,
            "properties": {
                "creator_id": ID_Q,
                "rate_bps": {"type": ["integer", "null"], "minimum": 0, "maximum": merchant_api.MAX_RATE_BPS},
            },
        },
        errors=(403, 404, 409, 422),
        tags=("codes",),
    ),
    ("DELETE", "/api/merchants/{merchant_id}/codes/{code}"): Op(
        "End a discount code's assignment", MERCHANT, answer="Code", errors=(403, 404, 422), tags=("codes",)
    ),
    ("POST", "/api/merchants/{merchant_id}/orders/{order_id}/review"): Op(
        "Approve or reject an order held in review",
        MERCHANT,
        answer="ReviewDecision",
        body={
            "type": "object",
            "required": ["decision"],
            "additionalProperties": False,
            "properties": {"decision": {"enum": ["approve", "reject"]}},
        },
        errors=(403, 404, 409, 422, 503),
        tags=("orders",),
    ),
    ("GET", "/api/merchants/{merchant_id}/orders/{order_id}/trace"): Op(
        "Why an order was (or was not) credited",
        ANY,
        answer="Trace",
        errors=(400, 403, 404, 503),
        tags=("orders",),
    ),
    ("GET", "/api/merchants/{merchant_id}/deliveries"): Op(
        "The webhook debugger: latest order webhook deliveries and their result",
        MERCHANT,
        answer="Deliveries",
        errors=(400, 403, 404),
        query=(
            Param(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": debugger.MAX_RECORDS},
                f"how many (default {endpoint_api.DEFAULT_DELIVERIES})",
            ),
            Param("result", {"enum": list(debugger.RESULTS)}, "only these"),
        ),
        tags=("webhooks",),
    ),
    ("POST", "/api/merchants/{merchant_id}/payouts"): Op(
        "Make (or repeat) the payout batch up to a time",
        MERCHANT,
        ok=201,
        answer="PayoutBatch",
        body="PayoutRequest",
        errors=(403, 404, 409, 422, 503),
        tags=("payouts",),
        also_ok=(200,),
        description="201 for a new batch, 200 when the same batch already exists. 409 "
        "`batch_cannot_finish`: a batch cut short cannot be finished; an operator must look.",
    ),
    # --- catalog, earnings, money
    ("GET", "/api/catalog"): Op(
        "Search products with the rate a creator earns",
        ANY,
        answer="CatalogPage",
        errors=(400, 403),
        query=(
            Param("q", {"type": "string", "maxLength": search.MAX_QUERY_CHARS}, "words in the title"),
            Param("category", {**apischemas.CATEGORY, "minLength": 0}, "exact category (empty: any)"),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": search.MAX_RESULTS}, "page size"),
            Param("cursor", {"type": "string"}, "next_cursor of the previous page"),
            _MERCHANT_Q,
            _CREATOR_Q,
        ),
        tags=("catalog",),
    ),
    ("GET", "/api/creators/{creator_id}/earnings"): Op(
        "A creator's commissions per currency over days",
        CREATOR,
        answer="Earnings",
        errors=(400, 403, 422, 503),
        query=(
            Param("from", {"type": "string", "format": "date"}, "first day (UTC)"),
            Param("to", {"type": "string", "format": "date"}, "last day (UTC)"),
            Param("in", apischemas.CURRENCY, "also convert into this currency"),
        ),
        tags=("earnings",),
    ),
    # --- the dashboard's figures as JSON (from the rollups; attribution/figures.py)
    ("GET", "/api/creators/{creator_id}/clicks"): Op(
        "A creator's clicks per day (human and bot) and top countries and devices",
        CREATOR,
        answer="CreatorClicks",
        errors=(400, 403, 503),
        query=(_FROM_30, _TO),
        description=f"Every day of `from`..`to` (at most {audience.MAX_DAYS} days; default the last "
        f"{audience.DEFAULT_DAYS}), zeros included; the {audience.TOP_ROWS} countries and device classes "
        "with the most human clicks, the rest summed as `other`. 400 `bad_date`: a day that is not "
        "YYYY-MM-DD in 1970-2105, a reversed or too long range.",
        tags=("dashboard",),
    ),
    ("GET", "/api/creators/{creator_id}/orders"): Op(
        "A creator's latest orders, each with its ledger rows explained",
        CREATOR,
        answer="CreatorOrders",
        errors=(400, 403, 503),
        query=(
            Param(
                "from", _DAY, f"orders with effect since this day (default {audience.DEFAULT_DAYS} days ago)"
            ),
        ),
        description=f"The {figures.CREATOR_ORDERS_SHOWN} orders booked last, with every ledger row and "
        "its explanation in words.",
        tags=("dashboard",),
    ),
    ("GET", "/api/merchants/{merchant_id}/clicks"): Op(
        "Clicks per day on a merchant's links (human and bot)",
        MERCHANT,
        answer="MerchantClicks",
        errors=(400, 403, 404, 503),
        query=(_FROM_30, _TO),
        description=f"Every day of `from`..`to` (at most {audience.MAX_DAYS} days; default the last "
        f"{audience.DEFAULT_DAYS}), zeros included. 400 `bad_date`: a day that is not YYYY-MM-DD in "
        "1970-2105, a reversed or too long range.",
        tags=("dashboard",),
    ),
    ("GET", "/api/merchants/{merchant_id}/creators"): Op(
        "A merchant's creators ranked by sales",
        MERCHANT,
        answer="MerchantCreators",
        errors=(400, 403, 404, 422, 503),
        query=(
            Param("from", _DAY, "first day (UTC; default: all)"),
            _TO,
            _list_limit(merchant_api.DEFAULT_CREATORS),
        ),
        description="Per creator and currency over `from`..`to`: orders credited and net commission, "
        "most orders first. 422 `sum_out_of_range`: a sum too large to add exactly (narrow the range).",
        tags=("dashboard",),
    ),
    ("GET", "/api/merchants/{merchant_id}/orders"): Op(
        "A merchant's latest orders with their commissions",
        MERCHANT,
        answer="MerchantOrders",
        errors=(400, 403, 404, 503),
        query=(_list_limit(merchant_api.DEFAULT_ORDERS),),
        description="Newest first: every order with an accepted event, credited or not, with its net "
        "commission per creator, currency and ledger status. Why an order earned what it did: its trace.",
        tags=("dashboard",),
    ),
    ("PUT", "/api/fx"): Op(
        "Add an FX rate version",
        ADMIN,
        ok=201,
        answer="FxVersion",
        body="FxUpdate",
        errors=(403, 422),
        tags=("money",),
    ),
    ("GET", "/api/fx"): Op("Every FX rate version", ANY, answer="FxVersions", tags=("money",)),
    ("GET", "/api/payouts/{payout_id}"): Op(
        "One payout", ANY, answer="Payout", errors=(403, 404), tags=("payouts",)
    ),
    ("GET", "/api/payouts/{payout_id}/statement.csv"): Op(
        "A payout's statement", ANY, answer="text/csv", errors=(403, 404, 503), tags=("payouts",)
    ),
    ("POST", "/api/payouts/{payout_id}/confirm"): Op(
        "Mark a payout paid", MERCHANT, answer="Payout", errors=(403, 404, 409, 503), tags=("payouts",)
    ),
    ("POST", "/api/payouts/{payout_id}/fail"): Op(
        "Mark a payout failed (its commissions become payable again)",
        MERCHANT,
        answer="Payout",
        errors=(403, 404, 409, 503),
        tags=("payouts",),
    ),
    # --- events out
    ("POST", "/api/endpoints"): Op(
        "Register an endpoint for signed events",
        ANY,
        ok=201,
        answer="Endpoint",
        body="EndpointCreate",
        errors=(403, 404, 409, 422),
        tags=("events",),
    ),
    ("GET", "/api/endpoints"): Op(
        "Endpoints of the key's owner (the admin: all, or the one named)",
        ANY,
        answer={
            "type": "object",
            "required": ["endpoints"],
            "properties": {
                "endpoints": {"type": "array", "items": {"$ref": "#/components/schemas/Endpoint"}}
            },
        },
        errors=(403, 422),
        query=(_CREATOR_Q, _MERCHANT_Q),
        tags=("events",),
    ),
    ("GET", "/api/endpoints/{endpoint_id}"): Op(
        "An endpoint with its delivery state and dead letters",
        ANY,
        answer="Endpoint",
        errors=(403, 404),
        tags=("events",),
    ),
    ("DELETE", "/api/endpoints/{endpoint_id}"): Op(
        "Delete an endpoint", ANY, answer="EndpointDeleted", errors=(403, 404), tags=("events",)
    ),
    ("POST", "/api/endpoints/{endpoint_id}/replay"): Op(
        "Requeue dead letters (and with `since`, past events)",
        ANY,
        answer="EndpointReplayed",
        body={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "since": {
                    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "format": "date-time"}]
                }
            },
        },
        body_required=False,
        errors=(403, 404, 422),
        tags=("events",),
    ),
    # --- webhooks in
    ("POST", "/webhooks/orders/{merchant_id}"): Op(
        "An order event from a merchant (Standard Webhooks signed)",
        PUBLIC,
        ok=202,
        answer="WebhookAccepted",
        body="WebhookBody",
        errors=(401, 404, 409, 503),
        webhook=True,
        tags=("webhooks",),
        also_ok=(200,),
        description="202 accepted, 200 duplicate (same webhook-id and body); 401 with the refusal reason "
        "as the error code (missing_headers, bad_signature, stale_timestamp, ...), 400 a body that is not "
        "a valid order, 409 a webhook-id reused with another body. See docs/webhooks.md.",
    ),
}
