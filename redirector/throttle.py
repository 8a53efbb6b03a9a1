"""Refused credentials per client address, for the API's bearer tokens and the dashboard's sign-in alike
(both go through `Authenticator.checked`). Past `max_failures` refused tokens from one address within
`window_s`, that address gets 429 with Retry-After until the window ends, for every token, a valid one
too: a limit that let a valid token through would tell a guesser which guess was right. An accepted token
does not clear the count, or one key of the guesser's own would reset it between guesses. A request
without any token is not a guess and is not counted.

The address is the one the redirect path uses (`ClientAddress`: behind trusted proxies, the right-most
untrusted X-Forwarded-For hop), an IPv6 client counted by its /64, kept only as its keyed hash. Clients
whose peer is not an IP address (a Unix socket with no trusted proxy in front) share one count."""

from __future__ import annotations

import ipaddress

from redis.asyncio import Redis

from core.keys import Keys
from redirector.clientip import ClientAddress

IPV6_BLOCK_BITS = 64


class CredentialThrottle:
    def __init__(
        self, redis: Redis, keys: Keys, address: ClientAddress, max_failures: int, window_s: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._address = address
        self.max_failures = max_failures
        self.window_s = window_s

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The count's name for a request: the keyed hash of its client address, in hex. An IPv6 client
        counts by its /64, the block one subscriber gets: per address, it would have 2^64 fresh counts."""
        address = self._address.client_ip(peer, forwarded_for)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        if ip is not None and ip.version == 6 and ip.ipv4_mapped is None:
            address = str(ipaddress.ip_network(f"{ip}/{IPV6_BLOCK_BITS}", strict=False).network_address)
        digest, _ = self._address.reduce(address)
        return f"{digest:016x}"

    async def wait_s(self, client: str) -> int:
        """0 when `client` may present a token; else the seconds until its window ends."""
        key = self._keys.auth_failures(client)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl_s = await pipe.execute()
        if count is None or int(count) < self.max_failures:
            return 0
        return max(1, int(ttl_s))  # (a key without TTL cannot be left by `failed`; still a wait, never 0)

    async def failed(self, client: str) -> None:
        """Count one refused token; the first refusal of a window starts it (EXPIRE NX: later ones do not
        push its end further out)."""
        key = self._keys.auth_failures(client)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window_s, nx=True)
            await pipe.execute()
