"""Management API for links and API keys (`/api/links`, `/api/keys`). Merchant, catalog, rate, earnings
and webhook routes live in attribution/api.py."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

import msgspec
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.routing import Route

from attribution.merchants import merchant_exists
from attribution.outbox import LINK_EVENT_LOST
from core import queries, validate
from core.clickhouse import ClickHouseError
from core.clock import now_ms
from core.errors import ApiError, json_list, json_pieces_response, json_response, read_json
from core.links import Link, decode_links, iso_ms, link_json, next_version_ms
from core.urls import Destination
from redirector import linkfields
from redirector.auth import SCOPES, KeyRecord, key_digest
from redirector.state import AppState

log = logging.getLogger("clicktrail.api")

GENERATED_CODE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
GENERATED_CODE_LENGTH = 8  # 62^8 ≈ 2·10^14 codes: collisions stay rare for billions of links
GENERATE_ATTEMPTS = 8
# A PATCH racing other writes of the same link is rebuilt on the fresh record this many times at most.
PATCH_ATTEMPTS = 5
# The most links `GET /api/links` lists (the newest).
MAX_LISTED_LINKS = 1000
# Single-segment paths the server answers itself: never usable as a link code.
RESERVED_CODES = frozenset(
    {"api", "dash", "healthz", "readyz", "metrics", "webhooks", "favicon.ico", "robots.txt"}
)


async def warn_shadowed_links(ctx: AppState) -> list[str]:
    """Codes of stored links that a reserved path now hides (a link `dash` made before the dashboard
    existed answers as the dashboard): each is logged at start-up with its creator, so an operator can
    move it to another code (docs/operations.md). Returns the codes found."""
    shadowed = []
    try:
        for code in sorted(RESERVED_CODES):
            link = await ctx.links.get(code) if validate.is_code(code) else None
            if link is not None:
                shadowed.append(code)
                log.warning(
                    "link %r (creator %s, to %s) is unreachable: /%s is reserved for the server's own "
                    "pages; recreate it under another code and disable this one",
                    code, link.creator_id, link.url, code,
                )  # fmt: skip
    except RedisError as exc:  # start-up goes on: the check is advice, the links themselves are intact
        log.warning("reserved-code check skipped: %s", exc)
    return shadowed


def _ctx(request: Request) -> AppState:
    return request.app.state.ctx


def check_id(value: object, field: str) -> str:
    if not validate.is_id(value):
        raise ApiError(422, "invalid_id", f"{field} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


async def create_link(request: Request):
    ctx = _ctx(request)
    principal = await ctx.auth.authenticate(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_body", "body must be a JSON object")
    creator_id = check_id(body.get("creator_id"), "creator_id")
    principal.require_creator(creator_id)
    link = await new_link(ctx, creator_id, body)
    return json_response(link_json(link, ctx.settings.public_url), status=201)


async def new_link(ctx: AppState, creator_id: str, body: dict) -> Link:
    """Validate and store a new link of `creator_id` (the caller checked the scope) and announce it; the
    API and the dashboard's link form both create links here. ApiError names the field at fault."""
    fields = linkfields.parse(body, patch=False)
    resolve = ctx.owners
    # Owners of every destination host in one lookup; a destination that already carries the click
    # parameter (in any spelling) would send the merchant two click ids: it is stored without it (the
    # link cache strips it again should the parameter change).
    dest: Destination = fields["url"]
    draft = await linkfields.apply(
        Link(code="", url=dest.url, creator_id=creator_id, host=dest.host, created_at_ms=0),
        fields,
        resolve,
        ctx.redis,
    )
    custom = body.get("code")
    if custom is not None:
        if not validate.is_code(custom):
            raise ApiError(422, "invalid_code", "code must be 3-64 characters of A-Z a-z 0-9 _ -")
        if custom.lower() in RESERVED_CODES:
            raise ApiError(422, "reserved_code", f"{custom!r} is reserved")
    for _ in range(1 if custom is not None else GENERATE_ATTEMPTS):
        code = custom or "".join(secrets.choice(GENERATED_CODE_CHARS) for _ in range(GENERATED_CODE_LENGTH))
        link = msgspec.structs.replace(draft, code=code, created_at_ms=now_ms())
        if await ctx.links.create(link):
            if await linkfields.owners_changed(link, resolve, ctx.redis):
                # A registration claimed the host between the lookup and the write: join its claim.
                await ctx.links.reconcile([code], resolve)
                link = await ctx.links.get(code) or link
            await _announce(ctx.outbox.link_created, link, ctx.redirect_stats.drop)
            return link
    if custom is not None:
        raise ApiError(409, "code_taken", f"code {custom!r} is already taken")
    raise ApiError(503, "code_space_exhausted", "could not find a free code; retry")


async def _announce(emit, link: Link, dropped: Callable[[str], None]) -> None:
    """Emit a link event after the change is stored. The link's own write is not made to wait on, or
    fail with, the event: an emission that fails is logged and counted as `dropped(LINK_EVENT_LOST)` (the
    event is lost, see docs/webhooks.md)."""
    try:
        await emit(link, now_ms())
    except RedisError as exc:
        dropped(LINK_EVENT_LOST)
        log.error("link event for %s not emitted: %s", link.code, exc)


async def _owned_link(request: Request) -> tuple[AppState, Link]:
    ctx = _ctx(request)
    principal = await ctx.auth.authenticate(request)
    code = request.path_params["code"]
    link = await ctx.links.get(code) if validate.is_code(code) else None  # no lookup for a non-code
    if link is None:
        raise ApiError(404, "not_found", "no link with this code")
    principal.require_creator(link.creator_id)
    return ctx, link


async def patch_link(request: Request):
    """Change a link's destination, rules, variants or expiry (the fields of linkfields.FIELDS). The new
    version replaces the old one only if nothing changed it meanwhile (else it is rebuilt on the fresh
    record), goes to every worker through the link-change stream, and is kept as a new row in
    ClickHouse `links`."""
    ctx, link = await _owned_link(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_body", "body must be a JSON object")
    fields = linkfields.parse(body, patch=True)
    for _ in range(PATCH_ATTEMPTS):
        changed = await linkfields.apply(link, fields, ctx.owners, ctx.redis)
        changed = msgspec.structs.replace(changed, updated_at_ms=next_version_ms(link))
        if await ctx.links.compare_and_replace(link, changed):
            if await linkfields.owners_changed(changed, ctx.owners, ctx.redis):
                await ctx.links.reconcile([changed.code], ctx.owners)  # a claim raced the write: join it
                changed = await ctx.links.get(changed.code) or changed
            await _announce(ctx.outbox.link_updated, changed, ctx.redirect_stats.drop)
            return json_response(link_json(changed, ctx.settings.public_url))
        link = await ctx.links.get(link.code)
        if link is None:
            raise ApiError(404, "not_found", "no link with this code")
    raise ApiError(409, "link_busy", "the link kept changing while being edited; send the PATCH again")


async def get_link(request: Request):
    """The link with its all-time totals from the ClickHouse rollups (`null` while ClickHouse cannot be
    asked: the link itself is still served from Redis)."""
    ctx, link = await _owned_link(request)
    body = link_json(link, ctx.settings.public_url)
    try:
        body["totals"] = await queries.link_totals(ctx.clickhouse(), link.code)
    except ClickHouseError as exc:
        log.warning("link totals unavailable: %s", exc)
        body["totals"] = None
    return json_response(body)


async def delete_link(request: Request):
    ctx, link = await _owned_link(request)
    link = await disable_link(ctx, link)
    return json_response(link_json(link, ctx.settings.public_url))


async def disable_link(ctx: AppState, link: Link) -> Link:
    """Disable a link (the API's DELETE and the dashboard's button), announcing the change once."""
    was_disabled = link.disabled
    link = await ctx.links.disable(link.code) or link
    if link.disabled and not was_disabled:
        await _announce(ctx.outbox.link_updated, link, ctx.redirect_stats.drop)
    return link


async def list_links(request: Request):
    ctx = _ctx(request)
    principal = await ctx.auth.authenticate(request)
    creator_id = check_id(request.query_params.get("creator_id"), "creator_id")
    principal.require_creator(creator_id)
    raws = await ctx.links.raw_by_creator(creator_id, MAX_LISTED_LINKS)
    # Off the event loop: a thousand links near the size limit are 64 MB of JSON, whose decoding and
    # encoding held the loop, and the redirects that share it, 0.25-0.4 s.
    return json_pieces_response(await asyncio.to_thread(_links_answer, raws, ctx.settings.public_url))


def _links_answer(raws: list[bytes], public_url: str) -> list[bytes]:
    return json_list("links", (link_json(link, public_url) for link in decode_links(raws)))


async def create_key(request: Request):
    ctx = _ctx(request)
    principal = await ctx.auth.authenticate(request)
    principal.require_admin()
    body = await read_json(request)
    if not isinstance(body, dict) or len({"creator_id", "merchant_id"} & body.keys()) != 1:
        raise ApiError(422, "invalid_scope", 'give exactly one of "creator_id" or "merchant_id"')
    scope = "creator" if "creator_id" in body else "merchant"
    subject_id = body[f"{scope}_id"]
    key, created = await issue_key(ctx, scope, subject_id)
    record = KeyRecord(key_digest(key), scope, subject_id, created)
    return json_response({"key": key, **key_json(record)}, status=201)


def key_json(record: KeyRecord) -> dict:
    """An issued key as the API shows it: its id (the key's SHA-256), never the key."""
    return {
        "id": record.id,
        "scope": record.scope,
        f"{record.scope}_id": record.subject_id,
        "created_at": iso_ms(record.created_at_ms),
    }


async def list_keys(request: Request):
    ctx = _ctx(request)
    principal = await ctx.auth.authenticate(request)
    principal.require_admin()
    given = [scope for scope in SCOPES if f"{scope}_id" in request.query_params]
    if len(given) != 1:
        raise ApiError(422, "invalid_scope", 'give exactly one of "creator_id" or "merchant_id"')
    scope = given[0]
    subject_id = check_id(request.query_params[f"{scope}_id"], f"{scope}_id")
    return json_response({"keys": [key_json(r) for r in await ctx.auth.keys_of(scope, subject_id)]})


async def revoke_key(request: Request):
    ctx = _ctx(request)
    principal = await ctx.auth.authenticate(request)
    principal.require_admin()
    record = await revoke(ctx, request.path_params["key_id"])
    return json_response(key_json(record))


async def revoke(ctx: AppState, key_id: str) -> KeyRecord:
    """Revoke a key by its id: the API and the dashboard's revoke button both come here (the caller
    checked the admin scope)."""
    if not validate.is_key_id(key_id):
        raise ApiError(422, "invalid_key_id", "a key id is the key's SHA-256: 64 lowercase hex digits")
    record = await ctx.auth.revoke(key_id)
    if record is None:
        raise ApiError(404, "unknown_key", "no key has this id (never issued, or revoked already)")
    return record


async def issue_key(ctx: AppState, scope: str, subject_id: object) -> tuple[str, int]:
    """A new API key for one creator or one existing merchant, and its creation time (ms): the API and
    the dashboard's key form both issue keys here (the caller checked the admin scope)."""
    subject_id = check_id(subject_id, f"{scope}_id")
    if scope == "merchant" and not await merchant_exists(ctx.redis, ctx.keys, subject_id):
        raise ApiError(404, "unknown_merchant", f"no merchant {subject_id!r}")
    created = now_ms()
    return await ctx.auth.issue(scope, subject_id, created), created


def routes() -> list[Route]:
    return [
        Route("/api/keys", create_key, methods=["POST"]),
        Route("/api/keys", list_keys, methods=["GET"]),
        Route("/api/keys/{key_id}", revoke_key, methods=["DELETE"]),
        Route("/api/links", create_link, methods=["POST"]),
        Route("/api/links", list_links, methods=["GET"]),
        Route("/api/links/{code}", get_link, methods=["GET"]),
        Route("/api/links/{code}", delete_link, methods=["DELETE"]),
        Route("/api/links/{code}", patch_link, methods=["PATCH"]),
    ]
