"""QR codes of a link's short URL: `GET /api/links/{code}/qr.svg` and `/qr.png` (`?size=` in pixels).

Drawn by the maintained `segno` (its own PNG writer: no imaging library). Rendering is CPU work on the
server that also answers redirects, so it runs in a thread and at most `MAX_CONCURRENT_HEAVY_API` at a
time per worker (the heavy-API gate, state.py), never on the redirect path. Same access as
`GET /api/links/{code}`: the admin, or the key of the link's creator."""

from __future__ import annotations

import asyncio
import io

import segno
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.errors import ApiError
from core.links import link_json
from redirector.api import _owned_link

MIN_SIZE_PX = 64
MAX_SIZE_PX = 2048  # a 2048 px PNG renders in tens of ms; larger would hold a thread for long
DEFAULT_SIZE_PX = 400
QUIET_ZONE_MODULES = 4  # the standard's quiet zone: scanners need it
# "m" recovers about 15 % of the symbol; segno raises it when the version has room to spare.
ERROR_LEVEL = "m"
# The short URL of a code never changes while CLICKTRAIL_PUBLIC_URL stays the same.
CACHE_CONTROL = "private, max-age=3600"


def parse_size(raw: str | None) -> int:
    """`?size=`: ASCII digits within MIN_SIZE_PX..MAX_SIZE_PX, DEFAULT_SIZE_PX when absent."""
    if raw is None:
        return DEFAULT_SIZE_PX
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and MIN_SIZE_PX <= int(raw) <= MAX_SIZE_PX):
        raise ApiError(400, "bad_size", f"size must be a whole number of pixels, {MIN_SIZE_PX}-{MAX_SIZE_PX}")
    return int(raw)


def qr_code(data: str) -> segno.QRCode:
    return segno.make(data, error=ERROR_LEVEL, micro=False)


def render_svg(data: str, size_px: int) -> bytes:
    """An SVG exactly `size_px` wide and high (its viewBox is in modules, so it scales without blur)."""
    out = io.BytesIO()
    qr_code(data).save(out, kind="svg", border=QUIET_ZONE_MODULES, omitsize=True, xmldecl=False, light="#fff")
    return out.getvalue().replace(b"<svg ", b'<svg width="%d" height="%d" ' % (size_px, size_px), 1)


def png_scale(data_modules: int, size_px: int) -> int:
    """Whole pixels per module (a fraction would blur): the most that fit in `size_px`, at least 1."""
    return max(1, size_px // data_modules)


def render_png(data: str, size_px: int) -> bytes:
    """A PNG at most `size_px` wide (a whole number of pixels per module), quiet zone included."""
    code = qr_code(data)
    modules = code.symbol_size(scale=1, border=QUIET_ZONE_MODULES)[0]
    out = io.BytesIO()
    code.save(out, kind="png", scale=png_scale(modules, size_px), border=QUIET_ZONE_MODULES)
    return out.getvalue()


def _handler(render, media_type: str):
    async def qr(request: Request) -> Response:
        ctx, link = await _owned_link(request)
        size_px = parse_size(request.query_params.get("size"))
        short_url = link_json(link, ctx.settings.public_url)["short_url"]
        async with ctx.heavy_api:
            body = await asyncio.to_thread(render, short_url, size_px)
        return Response(body, media_type=media_type, headers={"cache-control": CACHE_CONTROL})

    return qr


def routes() -> list[Route]:
    return [
        Route("/api/links/{code}/qr.svg", _handler(render_svg, "image/svg+xml"), methods=["GET"]),
        Route("/api/links/{code}/qr.png", _handler(render_png, "image/png"), methods=["GET"]),
    ]
