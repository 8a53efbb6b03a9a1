"""The Python ceiling: a bare ASGI app that answers `GET /{code}` with a 302 from a dict, nothing else,
served with the uvicorn settings `clicktrail serve` uses (captured from redirector.server.serve, so the two
cannot drift apart):

    BENCH_LINKS=1000 python -m benchmarks.bare_asgi --port 8001 --workers 1 [--http clicktrail]

Except, by default, the HTTP protocol: clicktrail wraps uvicorn's httptools protocol in its own subclass
(request-head deadline and size limit, redirector/protocol.py); that is clicktrail code, so its cost is
counted against clicktrail and the bare app runs on plain `httptools`. `--http clicktrail` runs the bare
app on clicktrail's protocol instead (to measure what the wrapper costs).

The number of links comes from BENCH_LINKS, read once when the app is built (uvicorn factory); when
BENCH_READY_DIR is set, each worker creates a file there once its table is built, so the benchmark can
wait for every worker (building a million codes takes seconds)."""

from __future__ import annotations

import argparse
import os
import tempfile

import uvicorn

from benchmarks.codes import code_for, destination_for

APP = "benchmarks.bare_asgi:create_app"
CACHE_CONTROL = (b"cache-control", b"private, no-store")
EMPTY_BODY = (b"content-length", b"0")
NOT_FOUND = {"type": "http.response.start", "status": 404, "headers": [EMPTY_BODY]}
BODY = {"type": "http.response.body", "body": b""}


def build_table(links: int) -> dict[str, bytes]:
    return {"/" + code_for(i): destination_for(i).encode() for i in range(links)}


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app():
    table = build_table(int(os.environ.get("BENCH_LINKS", "1000")))
    ready_dir = os.environ.get("BENCH_READY_DIR")
    if ready_dir:
        with open(os.path.join(ready_dir, f"worker-{os.getpid()}"), "w"):
            pass

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        location = table.get(scope["path"])
        if location is None:
            await send(NOT_FOUND)
        else:
            headers = [(b"location", location), CACHE_CONTROL, EMPTY_BODY]
            await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send(BODY)

    return app


def clicktrail_uvicorn_settings(host: str, port: int, workers: int, http: str = "httptools") -> dict:
    """The keyword arguments `clicktrail serve --host --port --workers` passes to uvicorn.run, without the
    app (uvicorn.run is swapped for a recorder while redirector.server.serve runs; nothing is started).
    `http="httptools"` replaces clicktrail's own protocol class by uvicorn's plain httptools protocol;
    `http="clicktrail"` keeps it."""
    from core.settings import Settings
    from redirector import server

    captured: dict = {}

    def record(app, **kwargs) -> None:
        captured.update(kwargs)

    real_run, saved_secret = uvicorn.run, os.environ.get("CLICKTRAIL_SECRET_KEY")
    uvicorn.run = record
    try:
        with tempfile.TemporaryDirectory(prefix="clicktrail-bench-") as data_dir:
            settings = Settings.load(secret_key="bench-only", data_dir=data_dir)
            server.serve(settings, host=host, port=port, workers=workers)
    finally:
        uvicorn.run = real_run
        if saved_secret is None:  # serve() sets it for its worker processes
            os.environ.pop("CLICKTRAIL_SECRET_KEY", None)
    captured.pop("factory", None)
    captured["workers"] = workers
    if http == "httptools":
        captured["http"] = "httptools"
    elif http != "clicktrail":
        raise ValueError(f"http must be httptools or clicktrail, not {http!r}")
    return captured


def describe(settings: dict) -> dict:
    """The settings as plain data (the protocol class by name) for a JSON result."""
    http = settings.get("http")
    if not isinstance(http, str):
        func = getattr(http, "func", http)
        keywords = getattr(http, "keywords", {})
        http = f"{func.__module__}.{func.__qualname__}({', '.join(f'{k}={v}' for k, v in keywords.items())})"
    return {**settings, "http": http}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="bare ASGI 302 app under clicktrail's uvicorn settings")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--http", choices=("httptools", "clicktrail"), default="httptools")
    args = parser.parse_args(argv)
    settings = clicktrail_uvicorn_settings(args.host, args.port, args.workers, args.http)
    uvicorn.run(APP, factory=True, **settings)


if __name__ == "__main__":
    main()
