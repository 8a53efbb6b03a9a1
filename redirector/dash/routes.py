"""Every dashboard route, in one place. A new page: a handler decorated with `@page(...)` in a views_*
module, and a line here."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from redirector.dash import merchant_forms, signin, views_admin, views_creator, views_merchant

STATIC_DIR = Path(__file__).resolve().parent / "static"


async def not_found(request: Request) -> Response:
    renderer = request.app.state.ctx.dash.renderer
    context = {"status_code": 404, "message": "There is no dashboard page here."}
    return renderer.html("error.html", context, 404)


def routes() -> list[BaseRoute]:
    creator = "/dash/creators/{creator_id}"
    return [
        Route("/dash", signin.start, methods=["GET"]),
        Route("/dash/", signin.start, methods=["GET"]),
        Route("/dash/login", signin.login_form, methods=["GET"]),
        Route("/dash/login", signin.login, methods=["POST"]),
        Route("/dash/logout", signin.logout, methods=["POST"]),
        Route(creator, views_creator.overview, methods=["GET"]),
        Route(f"{creator}/links", views_creator.links, methods=["GET"]),
        Route(f"{creator}/links", views_creator.create_link, methods=["POST"]),
        Route(f"{creator}/links/{{code}}/disable", views_creator.disable_link, methods=["POST"]),
        Route(f"{creator}/links/{{code}}/qr.svg", views_creator.link_qr, methods=["GET"]),
        Route(f"{creator}/earnings", views_creator.earnings, methods=["GET"]),
        Route("/dash/admin", views_admin.health, methods=["GET"]),
        Route("/dash/admin/merchants", views_admin.merchants, methods=["GET"]),
        Route("/dash/admin/creator", views_admin.creator, methods=["GET"]),
        Route("/dash/admin/keys", views_admin.keys, methods=["GET"]),
        Route("/dash/admin/keys", views_admin.create_key, methods=["POST"]),
        Route("/dash/admin/keys/revoke", views_admin.revoke_key, methods=["POST"]),
        *merchant_routes(),
        Mount("/dash/static", StaticFiles(directory=STATIC_DIR), name="dash-static"),
        # Last: any other /dash path is an HTML 404, not the API's JSON one.
        Route("/dash/{rest:path}", not_found, methods=["GET", "POST"]),
    ]


def merchant_routes() -> list[BaseRoute]:
    """A merchant's pages (views_merchant.py) and forms (merchant_forms.py)."""
    base = "/dash/merchants/{merchant_id}"
    return [
        Route(base, views_merchant.overview, methods=["GET"]),
        Route(f"{base}/orders", views_merchant.orders, methods=["GET"]),
        Route(f"{base}/orders/{{order_id}}", views_merchant.order, methods=["GET"]),
        Route(f"{base}/deliveries", views_merchant.deliveries, methods=["GET"]),
        Route(f"{base}/catalog", merchant_forms.catalog_page, methods=["GET"]),
        Route(f"{base}/catalog", merchant_forms.put_product, methods=["POST"]),
        Route(f"{base}/rates", merchant_forms.put_rates, methods=["POST"]),
        Route(f"{base}/codes", merchant_forms.codes_page, methods=["GET"]),
        Route(f"{base}/codes", merchant_forms.assign_code, methods=["POST"]),
        Route(f"{base}/codes/remove", merchant_forms.remove_code, methods=["POST"]),
        Route(f"{base}/secret", merchant_forms.secret_page, methods=["GET"]),
        Route(f"{base}/secret", merchant_forms.rotate_secret, methods=["POST"]),
    ]
