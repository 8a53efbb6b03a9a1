"""Which requests share one guessing count (redirector/throttle.py `CredentialThrottle.client`): one per
IPv4 address, one per IPv6 /48 (a site's block), an IPv4-mapped IPv6 address as its IPv4 one, ports
removed, the forwarded client only behind a trusted proxy."""

from __future__ import annotations

import pytest

from core.keys import Keys
from redirector.clientip import ClientAddress, bare_address
from redirector.throttle import CredentialThrottle

PROXY = "10.0.0.1"
PROXY_NET = "10.0.0.0/8"


def throttle(proxies: list[str] | None = None) -> CredentialThrottle:
    address = ClientAddress(b"s" * 32, proxies or [])
    return CredentialThrottle(_NoRedis(), Keys("ct:"), address, 20, 900)  # type: ignore[arg-type]


class _NoRedis:
    def register_script(self, script: str) -> None:
        return None


@pytest.mark.parametrize(
    "a, b",
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"),
        ("2001:db8:1:2:aaaa::7", "2001:DB8:1:2::"),
        ("2001:db8:1:2::1", "2001:db8:1:ffff::1"),  # one /48: 65,536 /64s
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("192.0.2.7", "192.0.2.7"),
        ("unix-socket", "not-an-ip"),
    ],
)
def test_one_count(a: str, b: str) -> None:
    assert throttle().client(a, None) == throttle().client(b, None)


@pytest.mark.parametrize(
    "a, b",
    [
        ("192.0.2.7", "192.0.2.8"),
        ("2001:db8:1:2::1", "2001:db8:2:2::1"),
        ("2001:db8:1::1", "2001:db9:1::1"),
        ("192.0.2.7", "2001:db8::c000:207"),
    ],
)
def test_separate_counts(a: str, b: str) -> None:
    assert throttle().client(a, None) != throttle().client(b, None)


@pytest.mark.parametrize(
    "hops, client",
    [
        ("[2001:db8:1::1]:443", "2001:db8:1::2"),
        ("192.0.2.7:5678", "192.0.2.7"),
        ("192.0.2.7, 10.0.0.5:80", "192.0.2.7"),  # a trusted hop with a port is still trusted
        ("192.0.2.7, [10.0.0.5]:80", "192.0.2.7"),
    ],
)
def test_forwarded_hops_count_without_their_ports(hops: str, client: str) -> None:
    trusted = throttle([PROXY_NET])
    assert trusted.client(PROXY, hops) == trusted.client(client, None)
    assert trusted.client(PROXY, hops) != trusted.client("192.0.2.99", None)


def test_the_forwarded_client_counts_only_behind_a_trusted_proxy() -> None:
    trusted = throttle([PROXY + "/32"])
    assert trusted.client(PROXY, "192.0.2.1") != trusted.client(PROXY, "192.0.2.2")
    assert trusted.client(PROXY, "192.0.2.1") == trusted.client("192.0.2.1", None)
    untrusted = throttle()
    assert untrusted.client(PROXY, "192.0.2.1") == untrusted.client(PROXY, "192.0.2.2")


def test_the_name_is_a_hash_not_the_address() -> None:
    name = throttle().client("192.0.2.7", None)
    assert len(name) == 16 and set(name) <= set("0123456789abcdef")
    assert name != throttle().client("192.0.2.8", None)


@pytest.mark.parametrize(
    "hop, bare",
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1:5678 ", "192.0.2.1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("unknown", "unknown"),
        ("[broken", "[broken"),
    ],
)
def test_a_hop_loses_its_port(hop: str, bare: str) -> None:
    assert bare_address(hop) == bare
