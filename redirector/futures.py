"""A future many requests wait on together (a group commit, a coalesced lookup)."""

from __future__ import annotations

import asyncio


class SharedFuture(asyncio.Future):
    """Refuses to be cancelled: a request cancelled while waiting (server shutdown) must not cancel the
    wait of the others; asyncio then cancels that request's task as soon as the result is in instead.
    Cheaper than `asyncio.shield` or one waiter per request."""

    def cancel(self, msg: object = None) -> bool:
        return False
