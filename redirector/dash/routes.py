"""Every dashboard route, in one place. A new page: a handler decorated with `@page(...)` in a views_*
module, and a line here."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from redirector.dash import signin, views_creator

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
        Mount("/dash/static", StaticFiles(directory=STATIC_DIR), name="dash-static"),
        # Last: any other /dash path is an HTML 404, not the API's JSON one.
        Route("/dash/{rest:path}", not_found, methods=["GET", "POST"]),
    ]
