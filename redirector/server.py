"""`clicktrail serve`: uvicorn with uvloop and httptools. Shutdown on SIGTERM/SIGINT is uvicorn's, in
order: stop accepting, let in-flight requests finish (each has its click durable before it answers),
then the lifespan flushes the recorder and closes connections."""

from __future__ import annotations

import functools
import os

import uvicorn

from core.settings import Settings
from redirector.protocol import HeaderTimeoutProtocol

GRACEFUL_SHUTDOWN_S = 30
KEEP_ALIVE_S = 5
BACKLOG = 4096


def serve(settings: Settings, host: str, port: int, workers: int) -> int:
    common = dict(
        host=host,
        port=port,
        loop="uvloop",
        # httptools plus a request-head deadline and size limit (protocol.py)
        http=functools.partial(HeaderTimeoutProtocol, header_timeout_s=settings.header_timeout_ms / 1000),
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is honoured by clicktrail itself, from trusted proxies only
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        backlog=BACKLOG,
        log_level=settings.log_level.lower(),
    )
    if workers == 1:
        from redirector.app import create_app

        uvicorn.run(create_app(settings), **common)
    else:
        # Each worker process builds its settings from the same environment (and the same generated
        # secret file, which Settings.load() in this parent created if needed).
        os.environ.setdefault("CLICKTRAIL_SECRET_KEY", settings.secret_key or "")
        uvicorn.run("redirector.app:create_app", factory=True, workers=workers, **common)
    return 0
