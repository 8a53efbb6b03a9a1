"""A creator's pages: overview (clicks per day, human and bot; top countries and devices; earnings at a
glance), links (create, copy, QR code, disable) and earnings (by status and currency, each order's ledger
rows with their explanation, payouts). Every figure comes from the functions the JSON API uses."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta

from starlette.responses import RedirectResponse, Response

from attribution import api as attribution_api
from attribution import audience, moneyapi, report
from core import queries, validate
from core.clickhouse import ClickHouseError
from core.errors import ApiError
from core.links import Link
from redirector import api, qr
from redirector.api import link_json
from redirector.dash import charts
from redirector.dash.page import Page, page

log = logging.getLogger("clicktrail.dash")

PERIODS_DAYS = (7, 30, 90, 365)
DEFAULT_PERIOD_DAYS = 30
# Links per page, newest first. A page is rendered on the event loop that answers redirects: 1,000 rows
# (with their QR images) cost ~130 ms there, 50 about 8 ms (benchmarks/dashload.py).
LINKS_PER_PAGE = 50
MAX_LINK_PAGE = 10_000
ORDERS_SHOWN = 50  # latest orders on the earnings page, each with all its ledger rows
PAYOUTS_SHOWN = 20
QR_SIZE_PX = 160


def today() -> date:
    return datetime.now(UTC).date()


def period(view: Page) -> tuple[int, date, date]:
    """The `?days=` of the page (one of PERIODS_DAYS), ending today (UTC)."""
    raw = view.request.query_params.get("days", str(DEFAULT_PERIOD_DAYS))
    if raw not in {str(d) for d in PERIODS_DAYS}:
        raise ApiError(400, "bad_period", f"days must be one of {', '.join(map(str, PERIODS_DAYS))}")
    days = int(raw)
    last = today()
    return days, last - timedelta(days=days - 1), last


def creator_of(view: Page) -> str:
    creator_id = view.param("creator_id")
    view.principal.require_creator(creator_id)
    return creator_id


@page("creator")
async def overview(view: Page) -> Response:
    creator_id = creator_of(view)
    days, first, last = period(view)
    codes = await view.ctx.links.codes_of(creator_id, audience.MAX_BREAKDOWN_LINKS)
    seen = await view.query(audience.collect, creator_id, codes, first, last)
    earnings = await view.query(report.collect, first, last, creator_id)
    daily = charts.line_svg(
        [day for day, _, _ in seen.days],
        [("human", [h for _, h, _ in seen.days]), ("bot", [b for _, _, b in seen.days])],
        title=f"Clicks per day, {first} to {last} (UTC)",
    )
    return view.render(
        "creator_overview.html",
        creator_id=creator_id,
        days=days,
        periods=PERIODS_DAYS,
        audience=seen,
        daily=daily,
        countries=charts.bar_svg(seen.countries, title="Top countries (human clicks)", column="clicks"),
        devices=charts.bar_svg(seen.devices, title="Top devices (human clicks)", column="clicks"),
        earnings=[e for e in earnings if e.currency],
        links=len(codes),
    )


def link_page(view: Page) -> int:
    """The `?page=` of the links page (1: the newest links); anything but 1..MAX_LINK_PAGE is a 400 page."""
    page = validate.query_int(view.request.query_params.get("page", "1"), 1, MAX_LINK_PAGE)
    if page is None:
        raise ApiError(400, "bad_page", f"page must be a whole number 1-{MAX_LINK_PAGE}")
    return page


async def _links_page(view: Page, creator_id: str, status: int = 200, **extra) -> Response:
    page_no = link_page(view)
    offset = (page_no - 1) * LINKS_PER_PAGE
    links = await view.ctx.links.by_creator(creator_id, LINKS_PER_PAGE + 1, offset)
    more = len(links) > LINKS_PER_PAGE
    links = links[:LINKS_PER_PAGE]
    try:
        totals = await view.query(queries.links_totals, [link.code for link in links])
    except ClickHouseError as exc:
        # The links live in Redis: they are listed, created and disabled without ClickHouse (as
        # GET /api/links/{code} answers with `totals: null`); only the click counts are missing.
        log.warning("link totals unavailable: %s", exc)
        totals = {}
    public = view.ctx.settings.public_url
    rows = [(link_json(link, public), totals.get(link.code)) for link in links]
    context = {
        "creator_id": creator_id,
        "rows": rows,
        "error": "",
        "notice": "",
        "url": "",
        "code": "",
        "totals_missing": bool(links) and not totals,
        "page": page_no,
        "more": more,
    }
    return view.render("creator_links.html", status=status, **(context | extra))


@page("creator")
async def links(view: Page) -> Response:
    creator_id = creator_of(view)
    created = view.request.query_params.get("created", "")
    notice = f"Link {created} created." if validate.is_code(created) else ""
    return await _links_page(view, creator_id, notice=notice)


@page("creator")
async def create_link(view: Page) -> Response:
    creator_id = creator_of(view)
    url, code = view.form.get("url", "").strip(), view.form.get("code", "").strip()
    body = {"url": url, "creator_id": creator_id} | ({"code": code} if code else {})
    try:
        link = await api.new_link(view.ctx, creator_id, body)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        return await _links_page(view, creator_id, 422, error=exc.message, url=url, code=code)
    return RedirectResponse(f"/dash/creators/{creator_id}/links?created={link.code}", status_code=303)


async def _own_link(view: Page, creator_id: str) -> Link:
    code = view.request.path_params["code"]
    link = await view.ctx.links.get(code) if validate.is_code(code) else None
    if link is None or link.creator_id != creator_id:
        raise ApiError(404, "not_found", "no link with this code")
    return link


@page("creator")
async def disable_link(view: Page) -> Response:
    creator_id = creator_of(view)
    await api.disable_link(view.ctx, await _own_link(view, creator_id))
    return RedirectResponse(f"/dash/creators/{creator_id}/links", status_code=303)


@page("creator", paced=False)
async def link_qr(view: Page) -> Response:
    """The link's QR code (the same drawing as GET /api/links/{code}/qr.svg), for the links page."""
    creator_id = creator_of(view)
    link = await _own_link(view, creator_id)
    short_url = link_json(link, view.ctx.settings.public_url)["short_url"]
    async with view.ctx.heavy_api:
        body = await asyncio.to_thread(qr.render_svg, short_url, QR_SIZE_PX)
    return Response(body, media_type="image/svg+xml", headers={"cache-control": qr.CACHE_CONTROL})


@page("creator")
async def earnings(view: Page) -> Response:
    creator_id = creator_of(view)
    days, first, last = period(view)
    rows = await view.query(report.collect, first, last, creator_id)
    ledger = await view.query(queries.creator_orders, creator_id, first, ORDERS_SHOWN)
    orders = attribution_api.order_rows(ledger)  # grouped and explained as GET .../orders answers
    book = moneyapi.payout_book(view.ctx)
    payouts = []
    for payout_id in await view.query(queries.creator_payout_ids, creator_id, PAYOUTS_SHOWN):
        found = await book.get(payout_id)
        if found is not None:
            payouts.append(found.public())
    return view.render(
        "creator_earnings.html",
        creator_id=creator_id,
        days=days,
        periods=PERIODS_DAYS,
        first=first,
        last=last,
        earnings=[e for e in rows if e.currency],
        orders=orders,
        payouts=payouts,
    )
