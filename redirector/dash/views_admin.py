"""The admin's pages: system health (ingestion lag, the spool, dead letters: the figures /metrics and the
API already have), merchants, and API keys (issued, listed and revoked through the API's own functions;
a new key is shown once)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from core import validate
from core.errors import ApiError
from redirector import api, spool
from redirector.auth import SCOPES
from redirector.dash.page import Page, page

# The merchants page lists this many at a time (an installation may have thousands).
MERCHANTS_SHOWN = 100


def spool_files(directory: Path) -> tuple[int, int]:
    """(files, bytes) in the spool directory: clicks waiting there for Redis (every worker's, and orphans
    left by dead workers until a live one replays them)."""
    if not directory.is_dir():
        return 0, 0
    sizes = [p.stat().st_size for p in directory.glob(f"*{spool.SUFFIX}") if p.is_file()]
    return len(sizes), sum(sizes)


async def dead_letters(view: Page) -> dict[str, int]:
    """Entries the ingester could not decode, per stream."""
    keys, redis = view.ctx.keys, view.ctx.redis
    clicks = 0
    for shard in range(keys.click_shards):
        clicks += await redis.xlen(keys.click_dead(shard))
    return {
        "clicks": clicks,
        "orders": await redis.xlen(keys.orders_dead),
        "link events": await redis.xlen(keys.link_events_dead),
    }


@page()
async def health(view: Page) -> Response:
    ctx = view.ctx
    files, size = await asyncio.to_thread(spool_files, ctx.settings.spool_dir)
    found = await ctx.endpoints.all()
    sizes = await ctx.outbox.queue_sizes([e.id for e in found])  # one round trip, not one per endpoint
    endpoints = [
        {"id": e.id, "owner": e.owner, "queued": queued, "dead": dead}
        for e, (queued, dead) in zip(found, sizes, strict=True)
    ]
    lag = [(name, *ctx.stream_lag.get(name, (0, 0.0))) for name in ("clicks", "orders")]
    return view.render(
        "admin_health.html",
        recording="redis" if ctx.recorder.live else "spool",
        spool_files=files,
        spool_bytes=size,
        lag=lag,
        ingest_dead=await dead_letters(view),
        endpoints=endpoints,
        delivery_dead=sum(e["dead"] for e in endpoints),
    )


@page()
async def merchants(view: Page) -> Response:
    """MERCHANTS_SHOWN merchants by id after `?after=`: the page stays small however many there are."""
    after = view.request.query_params.get("after", "")
    shown, total, next_after = await view.ctx.merchants.page(after, MERCHANTS_SHOWN)
    return view.render(
        "admin_merchants.html", merchants=shown, total=total, next_after=next_after, paged=bool(after)
    )


@page()
async def creator(view: Page) -> Response:
    """The admin opens any creator's dashboard by id: the form, and with `?creator_id=` the redirect."""
    if "creator_id" not in view.request.query_params:
        return view.render("admin_creator.html", creator_id="", error="")
    creator_id = view.request.query_params["creator_id"].strip()
    if not validate.is_id(creator_id):
        error = "creator_id must be 1-64 characters of A-Z a-z 0-9 _ -"
        return view.render("admin_creator.html", status=400, creator_id=creator_id, error=error)
    return RedirectResponse(f"/dash/creators/{creator_id}", status_code=303)


def _keys_page(view: Page, status: int = 200, **extra) -> Response:
    # Two forms on one page, each with its own values and error, so that a bad lookup never fills in
    # the issue form (and the other way round).
    context = {
        "key": "",
        "scope": "creator",
        "subject_id": "",
        "error": "",
        "find_scope": "creator",
        "find_subject": "",
        "find_error": "",
        "listed": None,
        "revoked": "",
    }
    return view.render("admin_keys.html", status=status, **(context | extra))


@page()
async def keys(view: Page) -> Response:
    """The issue form, and with `?scope=&subject_id=` the keys of that creator or merchant (with
    `&revoked=` naming a key just revoked there)."""
    query = view.request.query_params
    if "subject_id" not in query and "scope" not in query:
        return _keys_page(view)
    scope, subject_id = query.get("scope", ""), query.get("subject_id", "").strip()
    shown = {"find_scope": scope if scope in SCOPES else "creator", "find_subject": subject_id}
    if scope not in SCOPES:
        error = "Choose whether to list a creator's or a merchant's keys."
        return _keys_page(view, 400, find_error=error, **shown)
    if not validate.is_id(subject_id):
        return _keys_page(view, 400, find_error="The id must be 1-64 characters of A-Z a-z 0-9 _ -.", **shown)
    listed = [api.key_json(r) for r in await view.ctx.auth.keys_of(scope, subject_id)]
    revoked = query.get("revoked", "")
    # The link only names the id: the page says it is revoked only when no key has it (so a crafted link
    # cannot make any live key, of this subject or another, look revoked).
    ctx = view.ctx
    if not validate.is_key_id(revoked) or await ctx.redis.exists(ctx.keys.api_key(revoked)):
        revoked = ""
    return _keys_page(view, listed=listed, revoked=revoked, **shown)


@page()
async def revoke_key(view: Page) -> Response:
    """Revoke by id (the API's own function: an unknown or malformed id is its 404 or 422 page), then
    back to that subject's keys (a redirect: reloading the page does not send the revocation again)."""
    record = await api.revoke(view.ctx, view.form.get("key_id", ""))
    query = urlencode({"scope": record.scope, "subject_id": record.subject_id, "revoked": record.id})
    return RedirectResponse(f"/dash/admin/keys?{query}", status_code=303)


@page()
async def create_key(view: Page) -> Response:
    scope = view.form.get("scope", "")
    subject_id = view.form.get("subject_id", "").strip()
    if scope not in ("creator", "merchant"):
        return _keys_page(view, 422, error="Choose whether the key is for a creator or a merchant.")
    try:
        key, _ = await api.issue_key(view.ctx, scope, subject_id)
    except ApiError as exc:
        return _keys_page(view, 422, error=exc.message, scope=scope, subject_id=subject_id)
    # Shown once, on this answer only (never stored in clear, never in a URL).
    return _keys_page(view, 201, key=key, scope=scope, subject_id=subject_id)
