"""Guesses at the admin token, per client address. The admin token is the operator's choice and can be
guessed; API keys (`ctk_` + 256 random bits) cannot, so they are not limited here: a limit on them would
only lock out the neighbours of a client that keeps retrying a revoked key.

Every other token (a bearer token on the API, or a dashboard sign-in) is compared at once, in memory. A
wrong one is counted for its address, in one Redis script that also reads the count back: once it is
past `max_failures` within `window_s`, the answer is 429 with Retry-After instead of 401. A right one
only reads the count: 429 too while the count is at the limit (a limit that let the right token through
would tell a guesser which guess was right). So an operator's own calls never fill the count, however
many run at once, and an accepted token does not clear it. Concurrent guesses are counted in the order
Redis runs their scripts, so the right token can only be let through ahead of the limit's worth of wrong
ones.

The address is the one the redirect path uses (`ClientAddress`: behind trusted proxies, the right-most
untrusted X-Forwarded-For hop, every X-Forwarded-For line joined in order, ports removed); an IPv6
client counts by its /48 (a site's block: per address or per /64, one tunnel's /48 would be 65,536
fresh counts). It is kept only as its keyed hash. Clients whose address is not an IP address (a Unix
socket with no trusted proxy in front) share one count."""

from __future__ import annotations

from redis.asyncio import Redis

from core.keys import Keys
from redirector.clientip import ClientAddress

# KEYS[1]: the count; ARGV[1]: the window in seconds, ARGV[2]: the limit, ARGV[3]: 1 to count a wrong
# token (the window starts with the first), 0 to read the count for a right one. Returns the seconds to
# wait: 0 while this attempt is within the limit. A count found without a TTL gets one, so no count can
# refuse forever.
_ATTEMPT = """
local counted = ARGV[3] == '1'
local n = tonumber(redis.call(counted and 'INCR' or 'GET', KEYS[1]) or '0')
local ttl = redis.call('TTL', KEYS[1])
if ttl == -1 then  -- a count without a TTL (-2: no count at all)
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
if not counted then n = n + 1 end  -- the right token's place, were it counted
if n <= tonumber(ARGV[2]) then return 0 end
return math.max(ttl, 1)
"""


class CredentialThrottle:
    def __init__(
        self, redis: Redis, keys: Keys, address: ClientAddress, max_failures: int, window_s: int
    ) -> None:
        self._keys = keys
        self._address = address
        self.max_failures = max_failures
        self.window_s = window_s
        self._script = redis.register_script(_ATTEMPT)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The count's name for a request: the keyed hash of its client address, in hex; of an IPv6 client,
        of its block (the /48 network that `ClientAddress.reduce` gives, as its network address)."""
        reduce = self._address.reduce
        digest, network = reduce(self._address.client_ip(peer, forwarded_for))
        if ":" in network:  # IPv6 and not IPv4-mapped (reduce gives those their IPv4 /24)
            digest, _ = reduce(network.split("/", 1)[0])
        return f"{digest:016x}"

    async def refused(self, client: str) -> int:
        """Count a wrong token: 0 while within the limit, else the seconds until the window ends."""
        return await self._attempt(client, counted=True)

    async def wait_s(self, client: str) -> int:
        """For a right token: 0 below the limit, else the seconds until the window ends."""
        return await self._attempt(client, counted=False)

    async def _attempt(self, client: str, counted: bool) -> int:
        args = [self.window_s, self.max_failures, int(counted)]
        return int(await self._script(keys=[self._keys.auth_failures(client)], args=args))
