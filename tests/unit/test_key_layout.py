"""The Redis key layout on a cluster (core/keys.py): every multi-key operation's keys share a slot, the hot
families spread over all primaries of an evenly split cluster, and a single node keeps the old names."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from core.keys import MAX_CLICK_SHARDS, Keys
from core.redisclient import seed_nodes

PRIMARIES = 3  # scripts/cluster-redis.sh: redis-cli --cluster create splits the slots in equal thirds
CLUSTER = Keys("ct:", cluster=True, click_shards=6)


def slot(key: str) -> int:
    return key_slot(key.encode())


def primary(key: str, primaries: int = PRIMARIES) -> int:
    return slot(key) * primaries // REDIS_CLUSTER_HASH_SLOTS


# Each atomic operation of the code base (a MULTI/WATCH transaction or a Lua script) by the keys it touches.
ATOMIC_GROUPS = {
    "recorder append script (redirector/recorder.py)": lambda k: [k.click_stream(4), k.click_seq(4)],
    "ingest dead letters + ack (core/streams.py), clicks": lambda k: [k.click_stream(2), k.click_dead(2)],
    "ingest dead letters + ack, orders": lambda k: [k.orders, k.orders_dead],
    "ingest dead letters + ack, link events": lambda k: [k.link_events, k.link_events_dead],
    "webhook accept script (attribution/webhooks.py)": lambda k: [k.webhook_seen("m1", "w-9"), k.orders],
    "link creation indexes (core/links.py)": lambda k: [
        k.creator_links("alice"),
        k.host_links("shop.example"),
        k.host_links("example"),
        k.link_events,
    ],
    "merchant registration (attribution/merchants.py)": lambda k: [
        k.merchant("m1"),
        k.merchants,
        k.rates("m1"),
        k.merchant_secrets("m1"),
        k.domain_owner("shop.example"),
        k.domain_owners("shop.example"),
        k.domain_subdomains("example"),
        k.merchant("m2"),
        k.domain_transfers,
        k.domain_index,
    ],
    "catalog write script (attribution/catalog.py)": lambda k: [k.catalog("m1"), k.catalog_index("m1")],
    "unique-click script, one call on a cluster": lambda k: [k.unique_clicks(493_000, 17)],
    "reconcile of one link on a cluster (core/links.py)": lambda k: [k.link("Xy3kP9aQ")],
    "event emission script (attribution/outbox.py)": lambda k: [k.events, k.event_seen("evt_1")],
    "fan-out dead-letter script (attribution/outbox.py)": lambda k: [k.events_fanout, k.events_dead],
    "staged events that do not decode, dead-lettered and counted (attribution/outbox.py)": lambda k: [
        k.events_staged,
        k.events_dead,
        k.attribution_stats,
    ],
    "webhook delivery record script (attribution/debugger.py)": lambda k: [
        k.merchant_deliveries("m1"),
        k.merchant_unsigned_deliveries("m1"),
        k.merchant_deliveries_seq("m1"),
    ],
    "endpoint delivery scripts (attribution/delivery.py)": lambda k: [
        k.endpoint("ep_1"),
        k.endpoint_queue("ep_1"),
        k.endpoint_dead("ep_1"),
    ],
    "API key with its subject's index, issue and revoke (redirector/auth.py)": lambda k: [
        k.api_key("ab" * 32),
        k.api_keys_of("creator", "alice"),
        k.api_keys_of("merchant", "m1"),
    ],
    "endpoint registration (attribution/endpoints.py)": lambda k: [
        k.endpoints,
        k.owner_endpoints("creator:alice"),
        k.endpoint("ep_1"),
    ],
}


@pytest.mark.parametrize("name", sorted(ATOMIC_GROUPS))
def test_every_atomic_operation_is_in_one_slot(name: str) -> None:
    keys = ATOMIC_GROUPS[name](CLUSTER)
    assert len({slot(key) for key in keys}) == 1, (name, keys)


def test_control_keys_share_one_tag_even_keys_added_later() -> None:
    """A key another developer adds the usual way (`f"{self.prefix}..."`) lands in the control slot."""
    control = slot(CLUSTER.merchants)
    added_later = f"{CLUSTER.prefix}discount:code:SUMMER"
    assert slot(added_later) == control
    assert slot(CLUSTER.api_key("ab" * 32)) == slot(CLUSTER.attribution_cursor) == control


def test_click_shards_cover_every_primary() -> None:
    streams = CLUSTER.click_streams
    assert len(set(streams)) == 6
    assert {primary(s) for s in streams} == set(range(PRIMARIES))
    # Shard n lies in the n-th sixth of the slots: each primary of a 6-primary cluster gets one.
    assert [primary(s, 6) for s in streams] == list(range(6))


@pytest.mark.parametrize(
    "family",
    [
        lambda k, i: k.link(f"code{i}"),
        lambda k, i: k.unique_clicks(493_000, i % 64),
        lambda k, i: k.link_clicks(f"code{i}"),
        lambda k, i: k.auth_failures(f"{i:016x}"),
    ],
    ids=["link", "unique_clicks", "link_clicks", "auth_failures"],
)
def test_hot_families_spread_over_all_primaries(family) -> None:
    keys = [family(CLUSTER, i) for i in range(200)]
    counts = [0] * PRIMARIES
    for key in keys:
        counts[primary(key)] += 1
    assert min(counts) >= 40, counts  # about a third each
    assert not any(slot(key) == slot(CLUSTER.merchants) for key in keys[:50])


# Keys each written alone (one command, or a WATCH/script on that key only): low-volume control keys.
CONTROL_SINGLES = {
    "merchant_codes": lambda k: k.merchant_codes("m1"),
    "merchant_reviews": lambda k: k.merchant_reviews("m1"),
    "attribution_revisit": lambda k: k.attribution_revisit,
    "fx_rates": lambda k: k.fx_rates,
    "payouts": lambda k: k.payouts("m1"),
    "events_staged": lambda k: k.events_staged,
    "events_fanout": lambda k: k.events_fanout,
    "events_dead": lambda k: k.events_dead,
    "events_fanout_lease": lambda k: k.events_fanout_lease,
    "endpoint_lease": lambda k: k.endpoint_lease("ep_1"),
    "merchant_deliveries": lambda k: k.merchant_deliveries("m1"),
    "merchant_unsigned_deliveries": lambda k: k.merchant_unsigned_deliveries("m1"),
    "merchant_deliveries_seq": lambda k: k.merchant_deliveries_seq("m1"),
    "attribution_stats": lambda k: k.attribution_stats,
    "dash_session": lambda k: k.dash_session("ab" * 32),
}


@pytest.mark.parametrize("name", sorted(CONTROL_SINGLES))
def test_control_singles_are_in_the_control_slot(name: str) -> None:
    assert slot(CONTROL_SINGLES[name](CLUSTER)) == slot(CLUSTER.merchants)


def test_hot_singletons_are_off_the_control_slot() -> None:
    control = slot(CLUSTER.merchants)
    assert slot(CLUSTER.orders) != control
    assert slot(CLUSTER.attribution_lock) != control


def test_single_node_names_are_unchanged() -> None:
    keys = Keys("ct:")
    assert (keys.clicks, keys.recorder_seq, keys.clicks_dead) == (
        "ct:clicks",
        "ct:recorder:seq",
        "ct:clicks:dead",
    )
    assert keys.click_streams == ["ct:clicks"]
    assert keys.link("abc") == "ct:link:abc"
    assert keys.link_pattern() == "ct:link:*"
    assert keys.api_key_pattern() == "ct:apikey:*"
    # glob characters of a prefix are escaped; the cluster's control tag keeps every API key on one node
    assert Keys("t[1]*:").api_key_pattern() == "t\\[1\\]\\*:apikey:*"
    assert CLUSTER.api_key_pattern() == "ct:{ct:}apikey:*"
    assert (keys.orders, keys.orders_dead) == ("ct:orders", "ct:orders:dead")
    assert keys.webhook_seen("m", "w") == "ct:webhook:m:w"
    assert keys.attribution_lock == "ct:attribution:lock"
    assert keys.unique_clicks(5, 3) == "ct:uniq:5:3"
    assert keys.merchant("m") == "ct:merchant:m"


def test_every_key_method_is_covered_here() -> None:
    """A key family added to core/keys.py must be placed in the layout (and this test told about it)."""
    methods = {
        name
        for name, member in inspect.getmembers(Keys)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    }
    checked = {
        "link", "link_pattern", "creator_links", "host_links", "link_events", "api_key", "api_key_pattern",
        "api_keys_of",
        "clicks", "clicks_dead", "recorder_seq", "click_stream", "click_seq", "click_dead", "click_streams",
        "merchant", "merchants", "domain_owner", "domain_owners", "domain_subdomains", "domain_index",
        "domain_transfers",
        "merchant_secrets", "catalog", "catalog_index", "rates", "webhook_seen", "orders", "orders_dead",
        "attribution_lock", "attribution_cursor", "all_patterns", "link_events_dead", "unique_clicks", "of",
        "link_clicks", *CONTROL_SINGLES, "events", "event_seen", "endpoints", "owner_endpoints", "endpoint",
        "endpoint_queue", "endpoint_dead", "auth_failures",
    }  # fmt: skip
    assert methods - checked == set(), "new key family: add it to ATOMIC_GROUPS or the spread tests"


@given(prefix=st.from_regex(r"[a-z][a-z0-9:_]{0,12}", fullmatch=True), shards=st.integers(1, 16))
def test_every_key_keeps_the_prefix_and_shards_stay_distinct(prefix: str, shards: int) -> None:
    keys = Keys(prefix, cluster=True, click_shards=shards)
    every = [
        keys.link("c"),
        keys.merchant("m"),
        keys.orders,
        keys.attribution_lock,
        keys.unique_clicks(1, 2),
        *keys.click_streams,
    ]
    assert all(key.startswith(prefix) for key in every)  # all_patterns() finds them for clean-up
    assert len({slot(s) for s in keys.click_streams}) == shards


@pytest.mark.parametrize(
    ("prefix", "cluster", "shards"),
    [("ct:", False, 2), ("ct:", True, 0), ("ct:", True, MAX_CLICK_SHARDS + 1), ("c{t}:", True, 6)],
)
def test_impossible_layouts_are_refused(prefix: str, cluster: bool, shards: int) -> None:
    with pytest.raises(ValueError):
        Keys(prefix, cluster=cluster, click_shards=shards)


@pytest.mark.parametrize(
    ("url", "first", "others"),
    [
        ("redis://127.0.0.1:7001/0", "redis://127.0.0.1:7001/0", []),
        (
            "redis://127.0.0.1:7001,127.0.0.1:7002,10.0.0.3:7003/0",
            "redis://127.0.0.1:7001/0",
            [("127.0.0.1", 7002), ("10.0.0.3", 7003)],
        ),
        ("redis://:pw@h1:7001,h2:7002/0", "redis://:pw@h1:7001/0", [("h2", 7002)]),
        ("rediss://u:pw@[::1]:7001,[::1]:7002", "rediss://u:pw@[::1]:7001", [("::1", 7002)]),
    ],
)
def test_cluster_urls_may_name_several_nodes(url: str, first: str, others: list) -> None:
    assert seed_nodes(url) == (first, others)
