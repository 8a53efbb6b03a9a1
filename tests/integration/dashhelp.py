"""Signing in to the dashboard from a test, as a browser would: fetch the form, send it back with its
CSRF token and the key; later forms carry the session's token, read from the page."""

from __future__ import annotations

import re

import httpx

from tests.integration.apphelp import ADMIN

ADMIN_TOKEN = ADMIN["authorization"].split(" ", 1)[1]
_TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    found = _TOKEN_RE.search(html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/dash/login")
    assert form.status_code == 200, form.text
    return await client.post("/dash/login", data={"csrf_token": csrf_token(form.text), "key": key})


async def issue_key(client: httpx.AsyncClient, **subject: str) -> str:
    response = await client.post("/api/keys", json=subject, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["key"]


async def post_form(
    client: httpx.AsyncClient, page: str, action: str, data: dict[str, str]
) -> httpx.Response:
    """Open `page`, then send the form to `action` with the session's CSRF token from that page."""
    shown = await client.get(page)
    assert shown.status_code == 200, shown.text
    return await client.post(action, data={"csrf_token": csrf_token(shown.text), **data})
