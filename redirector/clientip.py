"""The client address, reduced before anything is written: a keyed 64-bit hash and the /24 (IPv4) or
/48 (IPv6) network. The full IP never leaves this module.

`X-Forwarded-For` counts only when the TCP peer is a configured trusted proxy; then the client is the
right-most address in the header that is not itself a trusted proxy (ports removed)."""

from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache

IPV4_PREFIX_BITS = 24
IPV6_PREFIX_BITS = 48
# Peers and clients repeat (proxies, NATs, a viewer's several clicks): memoising keeps the per-request cost
# at a dictionary lookup. Bounded so a flood of distinct addresses cannot grow it.
_MEMO_ENTRIES = 65_536


def bare_address(hop: str) -> str:
    """An X-Forwarded-For hop without its port: `[2001:db8::1]:443` → `2001:db8::1`, `192.0.2.1:5678` →
    `192.0.2.1` (some proxies send ports); anything else as it is, stripped."""
    hop = hop.strip()
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


class ClientAddress:
    def __init__(self, secret: bytes, trusted_proxies: list[str]) -> None:
        self._key = hashlib.blake2b(secret, digest_size=32, person=b"ct-iphash").digest()
        self._proxies = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]
        self.has_proxies = bool(self._proxies)  # read per request: decided once here
        self.reduce = lru_cache(maxsize=_MEMO_ENTRIES)(self._reduce)
        self.is_trusted = lru_cache(maxsize=1024)(self._is_trusted)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: the peer, unless the peer is a trusted proxy that says otherwise."""
        if not forwarded_for or not self._proxies or not self.is_trusted(peer):
            return peer
        for candidate in reversed(forwarded_for.split(",")):
            candidate = bare_address(candidate)
            if candidate and not self.is_trusted(candidate):
                return candidate
        return peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._proxies)

    def _reduce(self, address: str) -> tuple[int, str]:
        """(keyed hash, network prefix) of an address; (0, "") for something that is not an IP."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return 0, ""
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        bits = IPV4_PREFIX_BITS if ip.version == 4 else IPV6_PREFIX_BITS
        network = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
        digest = hashlib.blake2b(ip.packed, key=self._key, digest_size=8).digest()
        return int.from_bytes(digest, "big"), str(network)
