"""A merchant's pages that read: overview (clicks per day on its links, creators ranked by sales), orders
with their commission, one order's trace (why it earned what it earned, or nothing), and incoming webhook
deliveries with their refusal reasons. The forms (catalog, rates, codes, secret) are in merchant_forms.py.
Every figure comes from the functions the JSON API uses; a merchant key sees only its own merchant, the
admin any, a creator key none of them (403 page)."""

from __future__ import annotations

from starlette.responses import Response

from attribution import audience, debugger, merchant_api, report
from attribution.merchants import Merchant
from core.errors import ApiError
from core.links import iso_ms
from redirector.dash import charts
from redirector.dash.page import Page, page
from redirector.dash.views_creator import PERIODS_DAYS, period

# The ranking shows this many creators; the overview's orders page this many orders.
TOP_CREATORS = 20
LATEST_ORDERS = 50
LATEST_DELIVERIES = 50


async def merchant_of(view: Page) -> Merchant:
    """The merchant of the page's path, once the signed-in user may act for it (its key or the admin)."""
    merchant_id = view.param("merchant_id")
    view.principal.require_merchant(merchant_id)
    merchant = await view.ctx.merchants.get(merchant_id)
    if merchant is None:
        raise ApiError(404, "unknown_merchant", f"There is no merchant {merchant_id}.")
    return merchant


@page("merchant")
async def overview(view: Page) -> Response:
    merchant = await merchant_of(view)
    days, first, last = period(view)
    daily = await view.query(audience.merchant_days, merchant.merchant_id, first, last)
    # A SumOutOfRange is page._serve's 422, as on every page.
    ranked = await view.query(report.merchant_sales, merchant.merchant_id, first, last, TOP_CREATORS)
    clicks = charts.line_svg(
        [day for day, _, _ in daily],
        [("human", [h for _, h, _ in daily]), ("bot", [b for _, _, b in daily])],
        title=f"Clicks per day on links to {merchant.name or merchant.merchant_id}",
    )
    sales = charts.bar_svg(
        [(f"{r['creator_id']} ({r['currency']})", r["orders"]) for r in ranked],
        title="Creators ranked by orders credited",
        column="orders",
    )
    return view.render(
        "merchant_overview.html",
        merchant=merchant,
        days=days,
        periods=PERIODS_DAYS,
        clicks=clicks,
        sales=sales,
        ranked=ranked,
        human=sum(h for _, h, _ in daily),
        bots=sum(b for _, _, b in daily),
    )


@page("merchant")
async def orders(view: Page) -> Response:
    merchant = await merchant_of(view)
    rows = await view.query(report.merchant_orders, merchant.merchant_id, LATEST_ORDERS)
    return view.render("merchant_orders.html", merchant=merchant, orders=rows)


@page("merchant")
async def order(view: Page) -> Response:
    """The trace of one order: the function behind GET /api/merchants/{id}/orders/{order}/trace."""
    merchant = await merchant_of(view)
    order_id = merchant_api.check_order_id(view.request.path_params["order_id"])  # as the API: 400
    from attribution.attributor import Attributor  # loaded only when a trace is asked for, as the API does

    ctx = view.ctx
    async with ctx.dash.queries:  # its ClickHouse reads run in the pool Page.query's gate shares
        found = await Attributor(ctx.redis, ctx.keys, ctx.clickhouse(), ctx.ids).explain(
            merchant.merchant_id, order_id
        )
    if found is None:
        raise ApiError(404, "unknown_order", f"There is no order {order_id} of {merchant.merchant_id}.")
    return view.render("merchant_order.html", merchant=merchant, trace=found.trace)


@page("merchant")
async def deliveries(view: Page) -> Response:
    merchant = await merchant_of(view)
    result = view.request.query_params.get("result") or None
    if result is not None and result not in debugger.RESULTS:
        raise ApiError(400, "bad_query", f"result must be one of {', '.join(debugger.RESULTS)}")
    found = await view.ctx.webhook_log.latest(merchant.merchant_id, LATEST_DELIVERIES, result)
    for delivery in found:
        delivery["at"] = iso_ms(delivery["at_ms"])
    return view.render(
        "merchant_deliveries.html",
        merchant=merchant,
        deliveries=found,
        result=result or "",
        results=debugger.RESULTS,
    )
