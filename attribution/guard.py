"""The network backend of the delivery worker's HTTP client: it resolves each endpoint's host itself and
connects only to an address the operator's rules allow (attribution/endpoints.py `address_allowed`).

Checking the URL when an endpoint is registered is not enough: a public name can later resolve to
127.0.0.1 or a cloud metadata address (DNS rebinding). Here the address checked is the one the socket
connects to; TLS still verifies the certificate against the host name (httpcore passes the URL's host as
the server name, whatever address we dialled).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable

import httpcore

from attribution.endpoints import address_allowed


class AddressRefused(httpcore.ConnectError):
    """The host resolves only to addresses the operator does not allow."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in addresses if address_allowed(a, self._allow_private)]
        if not allowed:
            raise AddressRefused(f"{host} resolves to non-public addresses only ({', '.join(addresses)})")
        last: Exception | None = None
        for address in allowed:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout=None, socket_options=None):
        raise AddressRefused("unix sockets are never an endpoint")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
