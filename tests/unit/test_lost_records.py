"""Records lost to a Redis failure are counted with their reason, never only logged: a webhook delivery's
debugger record (the webhook itself was answered and counted) and a link event whose emission failed
after the link was stored."""

from __future__ import annotations

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError

from attribution.debugger import RECORD_LOST, Delivery, DeliveryLog
from core.keys import Keys


class _FailingRedis:
    """A Redis whose every script call fails as an unreachable server's does."""

    def register_script(self, script: str):
        async def call(keys, args):
            raise RedisConnectionError("Connection refused")

        return call


def test_a_debugger_record_that_cannot_be_written_is_counted() -> None:
    dropped: list[str] = []
    log = DeliveryLog(_FailingRedis(), Keys("ct:"), dropped.append)  # type: ignore[arg-type]
    asyncio.run(log.record("brand1", Delivery(at_ms=1, webhook_id="w1", result="accepted")))
    assert dropped == [RECORD_LOST]
