"""The compact link cache: every Link field survives packing, the budget is in bytes and holds, and the
two tiers (decoded and packed) agree on freshness, invalidation and stale fallbacks."""

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.links import OPEN_IN_BROWSER, Link, Rule, Smart, Target, Variant, planned
from core.urls import MAX_URL_BYTES
from core.validate import CODE_MAX_CHARS
from redirector.cache import LinkCache
from redirector.packed import PackedLinks, cost, pack, unpack

MS = 1_000_000  # ns


def plain(**fields) -> Link:
    base = {"code": "abc1234", "url": "https://shop.example.com/p/1", "creator_id": "creator",
            "host": "shop.example.com", "created_at_ms": 1_764_582_000_000}  # fmt: skip
    return Link(**(base | fields))


SMART = planned(
    Smart(
        rules=(Rule(Target("https://a.example/i", "a.example", "m1", "ref"), os=("ios",), country=("GB",)),),
        variants=(Variant(Target("https://b.example/x", "b.example"), 3), Variant(Target("app://y", "s"), 1)),
        expires_at_ms=1_800_000_000_000,
        max_clicks=1_000,
        expired=Target("https://shop.example.com/sold-out", "shop.example.com"),
    )
)


@pytest.mark.parametrize(
    "link",
    [
        plain(),
        plain(merchant_id="m-42", click_param="aff_id"),
        plain(disabled=True, updated_at_ms=1_764_582_000_001),
        plain(open_in=OPEN_IN_BROWSER),
        plain(host="other.example"),  # host not part of the URL: kept whole
        plain(host=""),
        plain(url="https://xn--caf-dma.example/p", host="xn--caf-dma.example"),
        plain(url="https://shop.example.com/p/caf%C3%A9?q=%E2%82%AC", creator_id="créateur-✓"),
        plain(host="shop.example.com", url="app://open?u=https://shop.example.com/"),  # host mid-URL
        plain(code="c" * CODE_MAX_CHARS, url="https://shop.example.com/" + "a" * (MAX_URL_BYTES - 25)),
        plain(smart=SMART),
        plain(smart=SMART, merchant_id="m-1", disabled=True, open_in=OPEN_IN_BROWSER, updated_at_ms=5),
    ],
)
def test_every_link_field_survives_packing(link: Link) -> None:
    assert unpack(link.code, pack(link, 123_456)) == (123_456, link)


def test_a_known_miss_packs_to_its_expiry_alone() -> None:
    assert unpack("nope", pack(None, 99)) == (99, None)
    assert len(pack(None, 99)) <= 2


def test_a_plain_link_is_compact() -> None:
    # The benchmark's links: what the 250-bytes-a-link target is measured on (worker RSS).
    link = plain(code="bm0AbC12", url="https://shop.example.com/p/123456", creator_id="bench")
    record = pack(link, 1_400_000)
    assert len(record) <= 60
    assert cost(link.code, record) <= 220


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_target = st.builds(Target, url=_text, host=_text, merchant_id=st.none() | _text, click_param=_text)
_smart = st.builds(
    Smart,
    rules=st.lists(
        st.builds(Rule, target=_target, os=st.tuples(_text), country=st.tuples(_text)), max_size=3
    ).map(tuple),
    variants=st.lists(st.builds(Variant, target=_target, weight=st.integers(1, 9)), max_size=3).map(tuple),
    expires_at_ms=st.integers(0, 2**53),
    max_clicks=st.integers(0, 2**40),
    expired=st.none() | _target,
)
_links = st.builds(
    Link,
    code=st.text("abcXYZ019_-", min_size=3, max_size=CODE_MAX_CHARS),
    url=_text,
    creator_id=_text,
    host=_text,
    created_at_ms=st.integers(0, 2**63 - 1),
    merchant_id=st.none() | _text,
    click_param=_text,
    disabled=st.booleans(),
    updated_at_ms=st.integers(0, 2**63 - 1),
    smart=st.none() | _smart.map(planned),
    open_in=st.sampled_from(["default", "browser"]),
)


@settings(max_examples=300)
@given(_links, st.integers(0, 2**62))
def test_packing_round_trips_any_link(link: Link, expires_ms: int) -> None:
    if not link.url:  # an empty URL is how a known miss is packed: a link always has one
        link = msgspec.structs.replace(link, url="x")
    assert unpack(link.code, pack(link, expires_ms)) == (expires_ms, link)


def test_the_packed_tier_keeps_within_its_budget_and_drops_what_was_not_used() -> None:
    records = {f"code{i:04}": pack(plain(code=f"code{i:04}"), 1) for i in range(100)}
    one = cost("code0000", records["code0000"])
    store = PackedLinks(max_bytes=10 * one)
    for i, (code, record) in enumerate(records.items()):
        store.put(code, record)
        store.get("code0000")  # used all along: never dropped
        assert store.bytes <= 10 * one
        assert len(store) == min(i + 1, len(store)) and store.bytes == len(store) * one
    assert store.get("code0000") is not None
    assert store.get("code0099") is not None  # the latest
    # Neither recent nor used again: dropped, unless a code shares code0000's mark (a byte per hash slot,
    # so about one code in a thousand at this budget: then it looks in use as code0000 does).
    mask = store._mark_mask
    shared = {c for c in records if hash(c) & mask == hash("code0000") & mask}
    assert all(code in shared for code in list(records)[1:90] if code in store)
    assert 5 <= len(store) <= 10


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["put", "get", "drop"]), st.integers(0, 30)), max_size=200),
       st.integers(0, 3_000))  # fmt: skip
def test_the_budget_holds_whatever_the_operations(ops, max_bytes: int) -> None:
    store, kept = PackedLinks(max_bytes), {}
    for op, n in ops:
        code = f"c{n}"
        if op == "put":
            kept[code] = pack(plain(code=code, url="https://s.example/" + "x" * n), n)
            store.put(code, kept[code])
        elif op == "get":
            assert store.get(code) in (None, kept.get(code))
        else:
            store.drop(code)
            kept.pop(code, None)
            assert store.get(code) is None
        assert store.bytes <= max_bytes
        assert store.bytes == sum(cost(c, r) for c, r in kept.items() if store.get(c) is not None)


@pytest.mark.parametrize("hot_links", [0, 1, 4096])
def test_the_cache_expires_invalidates_and_keeps_stale_copies(hot_links: int) -> None:
    cache = LinkCache(max_bytes=1 << 20, ttl_ms=1000, hot_links=hot_links)
    a = plain(code="aaa")
    cache.put("aaa", a, now_ns=0)
    cache.put("bbb", None, now_ns=0)  # a known miss is cached too
    assert cache.get("bbb", now_ns=10 * MS) == (True, None)
    assert cache.get("aaa", now_ns=10 * MS) == (True, a)
    assert cache.get("aaa", now_ns=1000 * MS) == (True, a)  # the last millisecond of its TTL
    assert cache.get("aaa", now_ns=1001 * MS) == (False, None)  # expired ...
    assert cache.stale("aaa") == a  # ... but kept for when Redis is down
    cache.put("aaa", a, now_ns=1001 * MS)
    assert cache.get("aaa", now_ns=1002 * MS) == (True, a)
    cache.invalidate("aaa")
    assert cache.stale("aaa") is None and cache.get("aaa", 1002 * MS) == (False, None)
    cache.put("ccc", plain(code="ccc"), now_ns=1002 * MS)
    cache.expire_all()
    assert cache.get("ccc", 1003 * MS)[0] is False and cache.stale("ccc") == plain(code="ccc")
    cache.put("ccc", plain(code="ccc"), now_ns=1004 * MS)  # read again after the reconnect: fresh
    assert cache.get("ccc", 1005 * MS) == (True, plain(code="ccc"))
    assert (cache.hits, cache.misses) == (5, 3)
    cache.clear()
    assert len(cache) == 0 and cache.stale("ccc") is None and cache.bytes == 0


def test_a_zero_budget_caches_nothing() -> None:
    cache = LinkCache(max_bytes=0, ttl_ms=1000)
    cache.put("aaa", plain(code="aaa"), now_ns=0)
    assert cache.get("aaa", 0) == (False, None) and cache.stale("aaa") is None and len(cache) == 0


def test_the_cache_is_bounded_by_bytes_not_links() -> None:
    short, long = plain(code="s0"), plain(code="l0", url="https://shop.example.com/" + "x" * 1500)
    budget = 20 * cost("s0", pack(short, 0))
    for name, link in (("short", short), ("long", long)):
        cache = LinkCache(max_bytes=budget, ttl_ms=1000, hot_links=0)
        for i in range(100):
            cache.put(f"{name}{i}", msgspec.structs.replace(link, code=f"{name}{i}"), now_ns=0)
        assert cache.bytes <= budget
        assert (len(cache) >= 10) if name == "short" else (len(cache) <= 2)


def test_a_link_is_kept_decoded_from_its_second_use_after_each_emptying(monkeypatch) -> None:
    from redirector import cache as cache_module

    decoded: list[str] = []

    def counting_unpack(code: str, record: bytes):
        decoded.append(code)
        return unpack(code, record)

    monkeypatch.setattr(cache_module, "unpack", counting_unpack)
    cache = LinkCache(max_bytes=1 << 20, ttl_ms=10**6, hot_links=4)
    for i in range(5):  # a put keeps its link decoded; the fifth empties the decoded tier
        cache.put(f"c{i}", plain(code=f"c{i}"), now_ns=0)
    for _ in range(4):
        assert cache.get("c0", MS) == (True, plain(code="c0"))
    assert decoded == ["c0", "c0"]  # decoded on its first two uses, then served decoded
    for i in range(4):  # c4, c0 and two of these fill the tier; the third empties it
        cache.put(f"d{i}", plain(code=f"d{i}"), now_ns=0)
    decoded.clear()
    for _ in range(3):
        assert cache.get("c0", MS) == (True, plain(code="c0"))
    assert decoded == ["c0", "c0"]  # its uses before the emptying do not count after it


def test_a_budget_far_past_any_worker_allocates_bounded_arrays() -> None:
    from redirector.packed import MAX_MARKS, MAX_SHARDS

    store = PackedLinks(max_bytes=1 << 50)  # a petabyte: only the bounds keep this from allocating it
    assert len(store._shards) == MAX_SHARDS and len(store._marks) == MAX_MARKS
    store.put("aaa", pack(plain(code="aaa"), 1))
    assert store.get("aaa") is not None and len(store) == 1


def _big(n: int) -> Link:
    """A link near the size limit: every rule with a URL near MAX_URL_BYTES (about 40 KB packed)."""
    url = "https://shop.example.com/p?" + "x" * (MAX_URL_BYTES - 40)
    rules = tuple(Rule(Target(f"{url}{r}", "shop.example.com"), country=("DE",)) for r in range(20))
    return plain(code=f"big{n:05d}", url=url, smart=planned(Smart(rules=rules)))


@pytest.mark.parametrize("via", ["put", "second use"])
def test_the_decoded_tier_holds_a_bounded_number_of_packed_bytes(via) -> None:
    """Found by an adversarial pass: 4,096 decoded links near the size limit (136 KB each decoded) took a
    worker from 130 to 690 MB outside the byte budget. Small links keep the tier's count bound."""
    from redirector import cache as cache_module

    cache = LinkCache(512 * 2**20, ttl_ms=600_000)
    links = [_big(n) for n in range(600)]
    record_bytes = len(pack(links[0], 0))
    assert record_bytes > 30_000
    for link in links:
        if via == "put":
            cache.put(link.code, link, now_ns=MS)
        else:
            cache._packed.put(link.code, pack(link, 600_000))  # cached by another worker's path: packed only
            for _ in range(2):
                assert cache.get(link.code, now_ns=MS)[1] == link
        held = sum(entry[3] for entry in cache._hot.values())
        assert held <= cache_module.HOT_RECORD_BYTES
    assert 0 < len(cache._hot) <= cache_module.HOT_RECORD_BYTES // record_bytes
    small = LinkCache(512 * 2**20, ttl_ms=600_000)
    for n in range(5000):
        small.put(f"s{n:06d}", plain(code=f"s{n:06d}"), now_ns=MS)
    assert len(small._hot) == 5000 - 4096  # emptied once, at the count bound, as before


def test_refreshing_a_hot_link_counts_its_bytes_once() -> None:
    """Review: a put over a link already in the decoded tier (a TTL refresh) added its bytes again, so
    the tier emptied itself early, over and over."""
    cache = LinkCache(512 * 2**20, ttl_ms=600_000)
    link = _big(0)
    for n in range(1000):
        cache.put(link.code, link, now_ns=(n + 1) * MS)
    assert len(cache._hot) == 1 and cache._hot_bytes == sum(entry[3] for entry in cache._hot.values())
    cache.invalidate(link.code)
    assert cache._hot_bytes == 0
