import pytest

from core.links import Link
from redirector.cache import LinkCache
from redirector.redirect import build_location, pass_through_query


@pytest.mark.parametrize(
    ("url", "query", "expected"),
    [
        ("https://s.example/p", "", "https://s.example/p?ct_click=ID"),
        ("https://s.example/p?a=1", "", "https://s.example/p?a=1&ct_click=ID"),
        ("https://s.example/p?a=1", "b=2", "https://s.example/p?a=1&b=2&ct_click=ID"),
        ("https://s.example/p#top", "b=2", "https://s.example/p?b=2&ct_click=ID#top"),
        ("https://s.example/p?a=1#top", "", "https://s.example/p?a=1&ct_click=ID#top"),
    ],
)
def test_build_location(url: str, query: str, expected: str) -> None:
    assert build_location(url, query, "ct_click", "ID") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", ""),
        (b"utm_source=yt&x=1", "utm_source=yt&x=1"),
        (b"ct_click=FORGED&x=1", "x=1"),
        (b"x=1&ct_click=A&ct_click=B", "x=1"),
        (b"q=caf\xc3\xa9", "q=caf%C3%A9"),
        (b"q=\xff\xfe", "q=%FF%FE"),  # invalid UTF-8 is encoded, never passed raw into a header
        (b'q=a"b<c>', "q=a%22b%3Cc%3E"),
        (b"q=a b", "q=a%20b"),
    ],
)
def test_pass_through_query(raw: bytes, expected: str) -> None:
    assert pass_through_query(raw, "ct_click") == expected


def link(code: str) -> Link:
    return Link(code=code, url="https://s.example/", creator_id="c", host="s.example", created_at_ms=1)


def test_cache_is_bounded_expires_and_keeps_stale_copies() -> None:
    cache = LinkCache(max_entries=2, ttl_ms=1000)
    cache.put("a", link("a"), now_ns=0)
    cache.put("b", None, now_ns=0)  # a known miss is cached too
    assert cache.get("b", now_ns=10) == (True, None)
    assert cache.get("a", now_ns=10) == (True, link("a"))  # a is now the most recently used
    cache.put("c", link("c"), now_ns=10)
    assert len(cache) == 2 and cache.get("a", 20)[0] is True and cache.get("b", 20)[0] is False  # b evicted
    assert cache.get("a", now_ns=2_000_000_000)[0] is False  # expired ...
    assert cache.stale("a") == link("a")  # ... but kept for when Redis is down
    cache.invalidate("a")
    assert cache.stale("a") is None
    cache.expire_all()
    assert cache.get("c", 20)[0] is False and cache.stale("c") == link("c")
