"""`max_clicks`: the GET clicks of a link counted exactly across every worker and server, by one Redis
counter per link (`Keys.link_clicks`) that a script checks and increments in one atomic step. Only links
with a limit pay this round trip; the counter is asked on the redirect's fast-failing client, and a Redis
that cannot answer makes the redirect answer 503 (an exact limit cannot be guessed)."""

from __future__ import annotations

from redis.asyncio import Redis

from core.keys import Keys

# Returns the new count, or 0 when the limit is already reached (the counter then stays as it is, so a
# limit raised later by PATCH lets exactly the difference through).
_TAKE_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return 0 end
return redis.call('INCR', KEYS[1])
"""


class ClickLimit:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._keys = keys
        self._redis = redis
        self._take = redis.register_script(_TAKE_LUA)

    async def take(self, code: str, max_clicks: int) -> bool:
        """Count one GET click if the link has clicks left; False when it has none."""
        return bool(await self._take(keys=[self._keys.link_clicks(code)], args=[max_clicks]))

    async def left(self, code: str, max_clicks: int) -> bool:
        """Whether a click would still be let through, without counting one (HEAD)."""
        used = await self._redis.get(self._keys.link_clicks(code))
        return int(used or 0) < max_clicks

    async def used(self, code: str) -> int:
        return int(await self._redis.get(self._keys.link_clicks(code)) or 0)
