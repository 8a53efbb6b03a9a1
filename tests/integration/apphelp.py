"""Running the real app in-process for a test: lifespan started and stopped around an httpx client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from core.settings import Settings
from redirector.app import ClicktrailApp, create_app

ADMIN = {"authorization": "Bearer admin-test-token"}


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[ClicktrailApp, httpx.AsyncClient]]:
    app = create_app(settings)
    receive_queue: asyncio.Queue = asyncio.Queue()
    sent: list[dict] = []

    async def receive():
        return await receive_queue.get()

    async def send(message):
        sent.append(message)

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    )
    await receive_queue.put({"type": "lifespan.startup"})
    while not any(m["type"].startswith("lifespan.startup.") for m in sent):
        await asyncio.sleep(0.005)
    assert sent[-1]["type"] == "lifespan.startup.complete", sent
    # As a load balancer waits for /readyz: requests start once the link cache preload is over, so a test's
    # first requests are the misses it expects.
    await asyncio.wait_for(_preloaded(app), 30)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client
    finally:
        await receive_queue.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(lifespan, 30)


async def _preloaded(app: ClicktrailApp) -> None:
    while not app.ctx.preload.done:
        await asyncio.sleep(0.005)


async def make_link(client: httpx.AsyncClient, creator_id: str, url: str, **extra) -> dict:
    response = await client.post(
        "/api/links", json={"url": url, "creator_id": creator_id, **extra}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return response.json()
