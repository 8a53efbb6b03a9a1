"""The ASGI application: the redirect path as a bare callable in front of a Starlette app that serves
health, metrics, the management API and webhooks. Resources are made in the lifespan (state.py)."""

from __future__ import annotations

import contextlib
import gc
import os

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from attribution import api as attribution_api
from attribution import endpoint_api
from core import repeats
from core.errors import (
    ApiError,
    error_response,
    handle_api_error,
    handle_http_error,
    handle_redis_error,
    handle_unexpected_error,
    json_response,
)
from core.settings import Settings
from redirector import api, openapi, qr
from redirector.dash import routes as dash_routes
from redirector.stall import StallMonitor
from redirector.state import AppState

# First path segments that never are link codes.
_NOT_CODES = api.RESERVED_CODES | {""}


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when a click can be recorded durably: Redis takes writes, or the spool can. `warming` says
    whether this worker is still preloading its link cache (preload.py): it answers meanwhile, some
    redirects at the cost of a Redis read, so it does not make the worker unready."""
    ctx: AppState = request.app.state.ctx
    spool_ok = os.access(
        ctx.settings.spool_dir if ctx.settings.spool_dir.exists() else ctx.settings.data_dir, os.W_OK
    )
    ready = ctx.recorder.live or spool_ok
    body = {
        "ready": ready,
        "recording": "redis" if ctx.recorder.live else "spool",
        "spool_writable": spool_ok,
        "warming": not ctx.preload.done,
    }
    return json_response(body, status=200 if ready else 503)


async def metrics(request: Request) -> Response:
    ctx: AppState = request.app.state.ctx
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)


def one_route_per_path(routes: list[Route]) -> list[Route]:
    """Routes sharing a path merged into one that dispatches on the method. Starlette answers a wrong
    method with the `Allow` of the first route that matches the path only; merged, `Allow` is complete."""
    by_path: dict[str, list[Route]] = {}
    for route in routes:
        by_path.setdefault(route.path, []).append(route)
    merged = []
    for path, group in by_path.items():
        if len(group) == 1:
            merged.append(group[0])
            continue
        handlers = {method: route.endpoint for route in group for method in route.methods or ()}

        async def dispatch(request: Request, handlers=handlers) -> Response:
            return await handlers[request.method](request)

        merged.append(Route(path, dispatch, methods=sorted(handlers)))
    return merged


async def openapi_json(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type="application/json")


def api_routes() -> list[Route]:
    """Every route of the router. A new one needs its entry in redirector/apidoc.py (a test says so)."""
    return one_route_per_path(
        [
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/api/openapi.json", openapi_json, methods=["GET"]),
            *api.routes(),
            *qr.routes(),
            *attribution_api.routes(),
            *endpoint_api.routes(),
            *dash_routes.routes(),
        ]
    )


class ClicktrailApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx: AppState | None = None
        self.api = Starlette(
            routes=api_routes(),
            # Every error is JSON: ours, the router's 404/405, and a bug's 500.
            exception_handlers={
                ApiError: handle_api_error,
                HTTPException: handle_http_error,
                RedisError: handle_redis_error,
                Exception: handle_unexpected_error,
            },
            lifespan=self._lifespan,
        )
        # Starlette answers a path that differs from a route by a trailing slash with a 307 to an absolute URL
        # built from the request's Host header: whoever sets Host picks where the client is sent (and a
        # cache keyed without Host stores it for everyone). No route of ours is reached that way: a 404.
        self.api.router.redirect_slashes = False
        # Built once from the very routes served.
        self.api.state.openapi = openapi.dumps(openapi.document(self.api.routes, strict=False)).encode()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette):
        ctx = AppState.build(self.settings)
        await ctx.start()
        await api.warn_shadowed_links(ctx)
        # Everything made so far (modules, settings, clients) lives as long as the process: keep it out of
        # the collector's full passes, which otherwise rescan it all while requests wait.
        gc.freeze()
        # Stalls of this worker's loop and its GC pauses on /metrics (stall.py): the open-loop tail's cause.
        stalls = StallMonitor()
        ctx.registry.register(stalls)
        stalls.start()
        app.state.ctx = ctx
        self.ctx = ctx
        try:
            yield
        finally:
            await stalls.close()
            await ctx.close()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.count("/") == 1 and path[1:] not in _NOT_CODES and self.ctx is not None:
                if scope["method"] in ("GET", "HEAD"):
                    return await self.ctx.redirect(scope, receive, send)
                # A code path exists for GET and HEAD only: 405 with Allow, not the router's 404.
                return await self.ctx.redirect.method_not_allowed(scope, send)
            # An order webhook reads no query, and each of its refusals is counted with its reason.
            repeated = (
                None if path.startswith("/webhooks/") else repeats.repeated_query_key(scope["query_string"])
            )
            if repeated is not None:
                return await self._repeated_parameter(path, repeated)(scope, receive, send)
        await self.api(scope, receive, send)

    def _repeated_parameter(self, path: str, name: str) -> Response:
        """400 for a query naming a parameter twice (core/repeats.py): an HTML page on the dashboard, as
        its other refusals, JSON elsewhere. A redirect's query is the viewer's, passed on untouched."""
        message = f"the query gives the parameter {repeats.shown(name)} twice"
        if self.ctx is not None and (path == "/dash" or path.startswith("/dash/")):
            return self.ctx.dash.renderer.html("error.html", {"status_code": 400, "message": message}, 400)
        return error_response(400, "repeated_parameter", message)

    def answer_now(self, method: str, path: str, query: bytes, headers: list, client, reply) -> bool:
        """The HTTP protocol's shortcut for a GET or HEAD of a cached plain link (protocol.py,
        RedirectHandler.answer_now); False sends the request through `__call__` as usual."""
        ctx = self.ctx
        if ctx is None or path.count("/") != 1 or path[1:] in _NOT_CODES:
            return False
        return ctx.redirect.answer_now(method, path[1:], query, headers, client, reply)


def create_app(settings: Settings | None = None) -> ClicktrailApp:
    return ClicktrailApp(settings or Settings.load())
