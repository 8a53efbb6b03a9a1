"""How a dashboard page is served. `@page(...)` wraps a handler: it finds the session (no session: to the
sign-in page), lets only the named kinds of user in (the admin always), reads and CSRF-checks a POST form
before the handler runs, and turns every refusal into an HTML error page with its status (never JSON,
never a 5xx for bad input). The handler gets a `Page`: the request, the app state, the session's
principal, the form, and `render()` / `query()`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from attribution.report import SumOutOfRange
from core import validate
from core.clickhouse import ClickHouseError
from core.errors import REDIS_TRANSIENT, ApiError
from redirector.auth import Principal
from redirector.dash import csrf
from redirector.dash.pacing import Busy
from redirector.dash.session import COOKIE, Session
from redirector.dash.site import nav

if TYPE_CHECKING:
    from redirector.state import AppState

log = logging.getLogger("clicktrail.dash")

Handler = Callable[["Page"], Awaitable[Response]]


@dataclass
class Page:
    request: Request
    ctx: AppState
    session: Session
    form: dict[str, str] = field(default_factory=dict)

    @property
    def principal(self) -> Principal:
        return self.session.principal

    def param(self, name: str) -> str:
        """A path parameter that must be an id (creator, merchant): anything else is a 404 page."""
        value = self.request.path_params[name]
        if not validate.is_id(value):
            raise ApiError(404, "not_found", f"no such {name.removesuffix('_id')}")
        return value

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        base = {
            "principal": self.principal,
            "csrf_token": self.session.csrf,
            "nav": nav(self.principal),
            "path": self.request.url.path,
        }
        return self.ctx.dash.renderer.html(template, base | context, status)

    def error(self, status: int, message: str) -> Response:
        return self.render("error.html", status=status, status_code=status, message=message)

    async def query(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(clickhouse, *args)` off the event loop, as the API runs its queries, at most
        MAX_CONCURRENT_DASH_QUERIES at a time (site.py says why)."""
        async with self.ctx.dash.queries:
            return await asyncio.to_thread(function, self.ctx.clickhouse(), *args)


def sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/dash/login?next={quote(target, safe='')}", status_code=303)


def page(*kinds: str, paced: bool = True) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Serve `handler` to signed-in users of these kinds ("creator", "merchant"); the admin always. A paced
    page waits for its turn (pacing.py); `paced=False` is for what a page loads many of at once (its QR
    images), which keeps the API's own limit instead."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            ctx: AppState = request.app.state.ctx
            if not paced:
                return await _signed_in(request, ctx, handler, kinds)
            try:
                async with ctx.dash.pacer.turn():
                    return await _signed_in(request, ctx, handler, kinds)
            except Busy:
                context = {"status_code": 503, "message": "The dashboard is busy; try again in a moment."}
                return ctx.dash.renderer.html("error.html", context, 503)

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap


async def _signed_in(request: Request, ctx: AppState, handler: Handler, kinds: tuple[str, ...]) -> Response:
    try:
        session = await ctx.dash.sessions.find(request.cookies.get(COOKIE))
    except RedisError as exc:
        log.warning("dashboard session unavailable: %s", exc)
        return ctx.dash.renderer.html("unavailable.html", {}, 503)
    if session is None:
        return sign_in_redirect(request)
    view = Page(request, ctx, session)
    if not (session.principal.is_admin or session.principal.kind in kinds):
        return view.error(403, "This page is not part of your account.")
    return await _serve(handler, view)


async def _serve(handler: Handler, view: Page) -> Response:
    try:
        if view.request.method == "POST":
            view.form = await csrf.read_form(view.request)
            csrf.check(view.session.csrf, view.form)
        return await handler(view)
    except csrf.Forbidden as exc:
        return view.error(403, str(exc))
    except ApiError as exc:
        return view.error(exc.status, exc.message)
    except SumOutOfRange as exc:  # as the API's earnings answer: refused, never shown wrapped
        return view.error(422, str(exc))
    except ClickHouseError as exc:
        log.warning("dashboard figures unavailable: %s", exc)
        return view.error(503, "The figures are read from ClickHouse, which cannot be reached now.")
    except REDIS_TRANSIENT as exc:
        log.warning("dashboard data unavailable: %s", exc)
        return view.error(503, "Redis cannot be reached now; try again in a moment.")
    except RedisError as exc:  # as the API's storage_error (core/errors.py): retrying will not mend it
        log.error("dashboard data unreadable: %r", exc)
        return view.error(500, "Stored data could not be read or written; the error is logged.")
