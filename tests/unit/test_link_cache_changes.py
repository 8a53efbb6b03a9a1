"""A link read from Redis is cached only if its code did not change while it was read (LinkCache.put's
`read_at`): the watcher's drop of a changed code must not be undone by a reply already in flight."""

from __future__ import annotations

import pytest

from core.links import Link
from redirector.cache import CHANGES_KEPT, LinkCache


def link(code: str) -> Link:
    return Link(code, f"https://shop.example.com/{code}", "creator", "shop.example.com", 1)


def other_codes(n: int) -> list[str]:
    return [f"other{i}" for i in range(n)]


@pytest.mark.parametrize(
    ("change", "cached"),
    [
        (lambda cache: None, True),  # nothing changed
        (lambda cache: cache.invalidate("x"), False),
        (lambda cache: cache.invalidate("y"), True),  # another code changed
        (lambda cache: cache.clear(), False),
        (lambda cache: cache.expire_all(), False),
        # more changes than are remembered one by one: every read in flight counts as stale
        (lambda cache: [cache.invalidate(c) for c in other_codes(CHANGES_KEPT + 1)], False),
    ],
    ids=["none", "same-code", "other-code", "clear", "expire-all", "too-many-to-remember"],
)
def test_a_put_after_a_change_during_the_read(change, cached) -> None:
    cache = LinkCache(2**20, 600_000)
    read_at = cache.changes
    change(cache)
    cache.put("x", link("x"), 0, read_at)
    assert (cache.get("x", 0)[1] == link("x")) is cached


def test_a_read_that_began_after_the_change_is_cached() -> None:
    cache = LinkCache(2**20, 600_000)
    cache.invalidate("x")
    read_at = cache.changes
    cache.put("x", link("x"), 0, read_at)
    assert cache.get("x", 0)[1] == link("x")
    cache.put("y", link("y"), 0)  # no read_at: always cached
    assert cache.get("y", 0)[1] == link("y")
