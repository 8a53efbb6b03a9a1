"""A path that differs from a route only by a trailing slash is a 404, never a redirect: Starlette's own
307 built its absolute Location from the Host header, so the sender of Host chose the destination."""

from __future__ import annotations

import asyncio

import pytest
from starlette.routing import Route

from redirector.app import api_routes
from tests.integration.apphelp import ADMIN, running_app

pytestmark = pytest.mark.redis


def slashed_paths() -> list[tuple[str, str]]:
    """(method, path + "/") for every route of the app, its parameters filled in."""
    routes = [route for route in api_routes() if isinstance(route, Route)]
    own = {route.path for route in routes}
    cases = []
    for route in routes:
        if route.path.endswith("/") or route.path + "/" in own:  # "/dash/" is a page of its own
            continue
        path = route.path
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", "x1y2z3").replace("{" + name + ":path}", "x1y2z3")
        cases += [(method, path + "/") for method in sorted(route.methods or ()) if method != "HEAD"]
    return cases


def test_no_route_answers_a_trailing_slash_with_a_redirect(settings, redis_client):
    async def scenario():
        async with running_app(settings) as (_, client):
            answers = {}
            for method, path in slashed_paths():
                response = await client.request(method, path, headers={**ADMIN, "host": "evil.example"})
                answers[(method, path)] = (response.status_code, response.headers.get("location"))
            redirected = {case: got for case, got in answers.items() if got[0] in (301, 302, 303, 307, 308)}
            assert redirected == {}
            assert len(answers) > 40
            assert all(location is None or "evil" not in location for _, location in answers.values())

    asyncio.run(scenario())
