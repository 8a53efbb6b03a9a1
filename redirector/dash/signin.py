"""Sign-in with an API key (or the admin token) and sign-out. The key is checked by the API's own lookup
(`Authenticator.checked`), so a key signs in to exactly the scope it has on the API."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.errors import ApiError
from redirector.dash import csrf
from redirector.dash.page import Page, page
from redirector.dash.session import (
    COOKIE,
    CSRF_BYTES,
    LOGIN_COOKIE,
    LOGIN_COOKIE_TTL_S,
    clear_cookie,
    is_secure,
    set_cookie,
)
from redirector.dash.site import home

UNAVAILABLE = "Sign-in is unavailable right now (Redis cannot be reached)."


def _next_path(value: str | None) -> str | None:
    """A `next` to return to after sign-in: a dashboard path on this server only (never another site)."""
    if not value or "\\" in value or not (value == "/dash" or value.startswith(("/dash/", "/dash?"))):
        return None
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else None


def _login_page(
    request: Request, status: int = 200, error: str = "", headers: dict[str, str] | None = None
) -> Response:
    ctx = request.app.state.ctx
    token = secrets.token_urlsafe(CSRF_BYTES)
    context = {"csrf_token": token, "error": error, "next": _next_path(request.query_params.get("next"))}
    response = ctx.dash.renderer.html("login.html", context, status)
    response.headers.update(headers or {})
    secure = is_secure(request, ctx.settings.public_url)
    set_cookie(response, LOGIN_COOKIE, token, LOGIN_COOKIE_TTL_S, secure)
    return response


async def login_form(request: Request) -> Response:
    ctx = request.app.state.ctx
    try:
        session = await ctx.dash.sessions.find(request.cookies.get(COOKIE))
    except RedisError:
        session = None
    if session is not None:
        return RedirectResponse(home(session.principal), status_code=303)
    return _login_page(request)


async def login(request: Request) -> Response:
    ctx = request.app.state.ctx
    try:
        form = await csrf.read_form(request)
        csrf.check(request.cookies.get(LOGIN_COOKIE), form)
    except csrf.Forbidden as exc:
        return ctx.dash.renderer.html("error.html", {"status_code": 403, "message": str(exc)}, 403)
    except ApiError as exc:
        return _login_page(request, exc.status, exc.message)
    key = form.get("key", "").strip()
    if not key:
        return _login_page(request, 422, "Enter your API key.")
    try:
        principal = await ctx.auth.checked(key, request)
        session = await ctx.dash.sessions.open(principal, key)
        # Signing in again (as someone else, say) ends the session the browser had: one cookie, one user.
        previous = await ctx.dash.sessions.find(request.cookies.get(COOKIE))
        if previous is not None:
            await ctx.dash.sessions.close(previous)
    except ApiError as exc:
        if exc.status == 429:
            minutes = -(-int((exc.headers or {}).get("retry-after", "60")) // 60)
            message = (
                f"Too many wrong attempts at the admin token from your address. Try again in {minutes} min."
            )
            return _login_page(request, 429, message, exc.headers)
        if exc.status == 503:
            return _login_page(request, 503, UNAVAILABLE, exc.headers)
        return _login_page(request, 401, "That key is not valid. Check it and try again.")
    except RedisError:  # the session calls after the check
        return _login_page(request, 503, UNAVAILABLE)
    target = _next_path(form.get("next")) or home(principal)
    response = RedirectResponse(target, status_code=303)
    secure = is_secure(request, ctx.settings.public_url)
    set_cookie(response, COOKIE, session.cookie, ctx.dash.sessions.ttl_s, secure)
    clear_cookie(response, LOGIN_COOKIE, secure)
    return response


@page("creator", "merchant")
async def logout(view: Page) -> Response:
    await view.ctx.dash.sessions.close(view.session)
    response = RedirectResponse("/dash/login", status_code=303)
    clear_cookie(response, COOKIE, is_secure(view.request, view.ctx.settings.public_url))
    return response


@page("creator", "merchant")
async def start(view: Page) -> Response:
    return RedirectResponse(home(view.principal), status_code=303)
