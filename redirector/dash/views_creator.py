"""A creator's pages: overview (clicks per day, human and bot; top countries and devices; earnings at a
glance), links (create, copy, QR code, disable) and earnings (by status and currency, each order's ledger
rows with their explanation, payouts). Every figure comes from the functions the JSON API uses."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from starlette.responses import Response

from attribution import audience, report
from core.errors import ApiError
from redirector.dash.page import Page, page

PERIODS_DAYS = (7, 30, 90)
DEFAULT_PERIOD_DAYS = 30


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
    codes = await view.ctx.links.codes_of(creator_id)
    seen = await audience.audience(view.ctx.clickhouse(), creator_id, codes, first, last)
    earnings = await report.earnings(view.ctx.clickhouse(), first, last, creator_id)
    return view.render(
        "creator_overview.html",
        creator_id=creator_id,
        days=days,
        periods=PERIODS_DAYS,
        audience=seen,
        earnings=[e for e in earnings if e.currency],
        links=len(codes),
    )
