"""What the dashboard keeps in the app state (`ctx.dash`), made once at start-up: the session store,
the template renderer and the pacer. Also each kind of user's navigation and home page."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from core.keys import Keys
from core.settings import Settings
from redirector.auth import Principal
from redirector.dash.pacing import Pacer
from redirector.dash.render import Renderer
from redirector.dash.session import Sessions

# Dashboard queries running at once per worker. They run in the default thread pool (min(32, CPUs + 4)
# threads: 6 on 2 cores), which the click recorder's spool writes share: a burst of page loads, or queries
# hanging on an unreachable ClickHouse, must leave threads free for the redirect path's spooling.
MAX_CONCURRENT_DASH_QUERIES = 2


@dataclass(frozen=True, slots=True)
class Dashboard:
    sessions: Sessions
    renderer: Renderer
    queries: asyncio.Semaphore  # the gate of Page.query
    pacer: Pacer  # whose turn it is: one page at a time, within dash_max_share_pct of the worker

    @classmethod
    def build(cls, settings: Settings, redis: Redis, keys: Keys) -> Dashboard:
        return cls(
            Sessions(redis, keys, settings.dash_session_ttl_s, settings.admin_token),
            Renderer(),
            asyncio.Semaphore(MAX_CONCURRENT_DASH_QUERIES),
            Pacer(settings.dash_max_share_pct),
        )


def home(principal: Principal) -> str:
    """Where a user lands after sign-in: their own overview."""
    if principal.kind == "creator":
        return f"/dash/creators/{principal.subject_id}"
    if principal.kind == "merchant":
        return f"/dash/merchants/{principal.subject_id}"
    return "/dash/admin"


def nav(principal: Principal) -> list[tuple[str, str]]:
    """(label, path) of the pages a user's navigation bar links to, in order."""
    if principal.kind == "creator":
        base = f"/dash/creators/{principal.subject_id}"
        return [("Overview", base), ("Links", f"{base}/links"), ("Earnings", f"{base}/earnings")]
    if principal.kind == "merchant":
        base = f"/dash/merchants/{principal.subject_id}"
        pages = ("catalog", "orders", "deliveries", "codes", "secret")
        labels = ("Catalog and rates", "Orders", "Webhooks", "Codes", "Secret")
        return [("Overview", base)] + [(label, f"{base}/{p}") for label, p in zip(labels, pages, strict=True)]
    return [
        ("Health", "/dash/admin"),
        ("Merchants", "/dash/admin/merchants"),
        ("Creators", "/dash/admin/creator"),
        ("Keys", "/dash/admin/keys"),
    ]
