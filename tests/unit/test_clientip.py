import pytest

from redirector.clientip import ClientAddress

SECRET = b"k" * 32


@pytest.mark.parametrize(
    ("proxies", "peer", "xff", "client"),
    [
        ([], "203.0.113.9", None, "203.0.113.9"),
        ([], "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: header ignored
        (["10.0.0.0/8"], "10.1.2.3", "198.51.100.1", "198.51.100.1"),
        (["10.0.0.0/8"], "10.1.2.3", "1.1.1.1, 198.51.100.1, 10.9.9.9", "198.51.100.1"),
        (["10.0.0.0/8"], "10.1.2.3", "10.2.2.2", "10.1.2.3"),  # only proxies: fall back to the peer
        (["10.0.0.0/8"], "203.0.113.9", "198.51.100.1", "203.0.113.9"),
        (["10.0.0.0/8"], "10.1.2.3", "", "10.1.2.3"),
    ],
)
def test_client_ip(proxies: list[str], peer: str, xff: str | None, client: str) -> None:
    assert ClientAddress(SECRET, proxies).client_ip(peer, xff) == client


@pytest.mark.parametrize(
    ("address", "prefix"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1:2::77", "2001:db8:1::/48"),
        ("::ffff:203.0.113.77", "203.0.113.0/24"),
        ("not-an-ip", ""),
    ],
)
def test_reduce_prefix(address: str, prefix: str) -> None:
    digest, network = ClientAddress(SECRET, []).reduce(address)
    assert network == prefix
    assert (digest == 0) == (prefix == "")


def test_hash_is_keyed_and_stable() -> None:
    a = ClientAddress(SECRET, []).reduce("203.0.113.77")[0]
    assert a == ClientAddress(SECRET, []).reduce("203.0.113.77")[0]
    assert a != ClientAddress(b"other" * 8, []).reduce("203.0.113.77")[0]
    assert a != ClientAddress(SECRET, []).reduce("203.0.113.78")[0]
