"""The packed link cache against its byte budget and against a true LRU: the budget holds after any
sequence of operations (the reviewer's counterexample, a state machine), and the hit rate is close to an
OrderedDict LRU of the same byte size, including popular links served from the decoded tier."""

import json
import os
import random
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core.links import Link
from redirector.cache import LinkCache
from redirector.packed import MAX_MARK, SECOND_CHANCES, SHARD_BYTES, PackedLinks, cost, pack

MS = 1_000_000  # ns


def link(code: str, extra: int = 0) -> Link:
    return Link(code, "https://shop.example.com/p/" + "x" * extra, "creator", "shop.example.com", 1)


def record(code: str, extra: int = 0) -> bytes:
    return pack(link(code, extra), 1)


ONE = cost("c0000", record("c0000"))  # every code of these tests has 5 characters: one size


def test_reading_everything_back_then_adding_keeps_the_budget() -> None:
    # An earlier review's counterexample (against the generational cache this replaced): reading every
    # record back, then adding as many again, must keep the budget and keep the cache full.
    store = PackedLinks(16 * ONE)
    for round_ in range(10):
        codes = [f"r{round_}{i:03}" for i in range(16)]
        for code in codes:
            store.put(code, record(code))
        for code in codes:
            store.get(code)
        for i in range(14):
            store.put(f"n{round_}{i:03}", record(f"n{round_}{i:03}"))
        assert store.bytes <= 16 * ONE
        assert len(store) * ONE == store.bytes >= 15 * ONE


class Budget(RuleBasedStateMachine):
    """Any mix of puts (records of several sizes), gets, drops and clears: the budget holds, the byte count
    is that of what is held, and what is held is what was last put."""

    shard_bytes = 1 << 40  # one shard

    def __init__(self) -> None:
        super().__init__()
        self.max_bytes = 16 * ONE
        self.store = PackedLinks(self.max_bytes, shard_bytes=self.shard_bytes)
        self.kept: dict[str, bytes] = {}

    codes = st.integers(0, 40).map(lambda n: f"c{n:04}")

    @rule(code=codes, extra=st.sampled_from([0, 0, 0, 40, 150]))
    def put(self, code: str, extra: int) -> None:
        self.kept[code] = record(code, extra)
        self.store.put(code, self.kept[code])
        assert code in self.store  # room is made before a record goes in: never the one just put

    @rule(code=codes)
    def get(self, code: str) -> None:
        assert self.store.get(code) in (None, self.kept.get(code))

    @rule(code=codes)
    def drop(self, code: str) -> None:
        self.store.drop(code)
        self.kept.pop(code, None)
        assert code not in self.store

    @rule()
    def clear(self) -> None:
        self.store.clear()
        self.kept.clear()

    @invariant()
    def within_budget_and_counted(self) -> None:
        held = {code: r for code, r in self.kept.items() if code in self.store}
        assert len(self.store) == len(held)
        assert self.store.bytes == sum(cost(c, r) for c, r in held.items()) <= self.max_bytes


class ShardedBudget(Budget):
    """The same with eight shards of about two records each: evictions from the fuller of two shards, from
    the other when the fuller's oldest is in use, and past empty shards."""

    shard_bytes = 2 * ONE


TestBudget = Budget.TestCase
TestBudget.settings = settings(max_examples=150, stateful_step_count=120, deadline=None)
TestShardedBudget = ShardedBudget.TestCase
TestShardedBudget.settings = settings(max_examples=150, stateful_step_count=120, deadline=None)


def lru_misses(codes: list[str], capacity: int) -> int:
    lru: OrderedDict[str, None] = OrderedDict()
    misses = 0
    for code in codes:
        if code in lru:
            lru.move_to_end(code)
            continue
        misses += 1
        lru[code] = None
        if len(lru) > capacity:
            lru.popitem(last=False)
    return misses


def packed_misses(codes: list[str], capacity: int, shard_bytes: int = SHARD_BYTES) -> int:
    store, misses = PackedLinks(capacity * ONE, shard_bytes), 0
    for code in codes:
        if store.get(code) is None:
            misses += 1
            store.put(code, record(code))
    return misses


def cache_misses(codes: list[str], capacity: int, hot_links: int) -> int:
    cache = LinkCache(capacity * ONE, ttl_ms=10**9, hot_links=hot_links)
    for code in codes:
        if not cache.get(code, now_ns=MS)[0]:
            cache.put(code, link(code), now_ns=MS)
    return cache.misses


def uniform(share: float, capacity: int, n: int, rng: random.Random) -> list[str]:
    distinct = int(share * capacity)
    return [f"u{rng.randrange(distinct):04}" for _ in range(n)]


def popular_and_new(popular: int, new_share: float, n: int, rng: random.Random) -> list[str]:
    return [f"n{i:04}" if rng.random() < new_share else f"p{rng.randrange(popular):04}" for i in range(n)]


CAPACITY = 1342
# The shards and the mark slots follow the string hash, which follows PYTHONHASHSEED (random per process
# unless set): measured under the test process's own seed, the popular workloads failed about one run in a
# hundred. Each case is measured under these pinned seeds instead, in children, so its result is the same in
# every run. Over seeds 0-339 the worst excess over the LRU was 1.12 points for the packed tier alone and
# 1.48 with the decoded tier in front; the typical one is 0-0.3 points.
HASH_SEEDS = (0, 1, 2, 3, 4, 5)
WORST_POPULAR = 0.015  # a pinned seed may be one of the worst
MEAN_BOUND = 0.005  # over the pinned seeds: what a change of the policy would move
# (workload, the worst miss ratio allowed above the LRU's under a pinned seed): uniform traffic below the
# capacity must end up all hits after its warm-up, as an LRU does; past the capacity and with a trickle of
# new codes the counting CLOCK may drop a little of what an LRU keeps (it knows uses, not their order, and
# shares mark slots).
WORKLOADS = [
    ("uniform 0.5", lambda rng: uniform(0.5, CAPACITY, 40_000, rng), 0.002),
    ("uniform 0.75", lambda rng: uniform(0.75, CAPACITY, 40_000, rng), 0.002),
    ("uniform 0.9", lambda rng: uniform(0.9, CAPACITY, 40_000, rng), 0.002),
    ("uniform 0.99", lambda rng: uniform(0.99, CAPACITY, 40_000, rng), 0.002),
    ("uniform 1.2", lambda rng: uniform(1.2, CAPACITY, 40_000, rng), 0.01),
    ("popular 1200 + 2% new", lambda rng: popular_and_new(1200, 0.02, 40_000, rng), WORST_POPULAR),
    ("popular 600 + 10% new", lambda rng: popular_and_new(600, 0.10, 40_000, rng), WORST_POPULAR),
]


# Shard sizes: one shard (an exact CLOCK), the default (4 shards of about 335 links at this capacity, as
# many links a shard as at the default budget with ~200 B links), and 16 shards of about 84 links.
SHARDINGS = [1 << 40, SHARD_BYTES, SHARD_BYTES // 4]

DECODED = [
    ("popular 1200 + 2% new", 1200, 0.02),
    ("popular 300 + 50% new", 300, 0.50),  # the decoded tier outlives the packed tier's capacity
]
HOT_LINKS = [0, 64, 4096]


def excess_misses() -> dict[str, float]:
    """Each case's miss ratio minus the LRU's, in this process (under its hash seed)."""
    excess = {}
    for name, workload, _ in WORKLOADS:
        codes = workload(random.Random(7))
        lru = lru_misses(codes, CAPACITY) / len(codes)
        for shard_bytes in SHARDINGS:
            excess[f"packed {name} {shard_bytes}"] = (
                packed_misses(codes, CAPACITY, shard_bytes) / len(codes) - lru
            )
    for name, popular, new_share in DECODED:
        codes = popular_and_new(popular, new_share, 40_000, random.Random(11))
        lru = lru_misses(codes, CAPACITY) / len(codes)
        for hot_links in HOT_LINKS:
            excess[f"decoded {name} {hot_links}"] = (
                cache_misses(codes, CAPACITY, hot_links) / len(codes) - lru
            )
    return excess


CHILD = "import json, tests.unit.test_link_cache_lru as t; print(json.dumps(t.excess_misses()))"


@pytest.fixture(scope="module")
def excess_by_seed() -> list[dict[str, float]]:
    root = Path(__file__).resolve().parents[2]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD], cwd=root, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        )
        for seed in HASH_SEEDS
    ]  # fmt: skip
    try:
        outs = [child.communicate(timeout=300)[0] for child in children]
    finally:
        for child in children:
            child.kill()  # a child left running when another failed or timed out
    assert [child.returncode for child in children] == [0] * len(children)
    return [json.loads(out) for out in outs]


def _check(excess_by_seed: list[dict[str, float]], case: str, worst: float) -> None:
    excess = [by_case[case] for by_case in excess_by_seed]
    assert max(excess) <= worst, (case, excess)
    assert sum(excess) / len(excess) <= MEAN_BOUND, (case, excess)


@pytest.mark.parametrize("shard_bytes", SHARDINGS)
@pytest.mark.parametrize(("name", "bound"), [(w[0], w[2]) for w in WORKLOADS], ids=[w[0] for w in WORKLOADS])
def test_the_packed_tier_misses_about_as_often_as_an_lru(
    excess_by_seed: list[dict[str, float]], name: str, bound: float, shard_bytes: int
) -> None:
    _check(excess_by_seed, f"packed {name} {shard_bytes}", bound)


@pytest.mark.parametrize("hot_links", HOT_LINKS)
@pytest.mark.parametrize("name", [d[0] for d in DECODED])
def test_popular_links_served_decoded_stay_in_the_packed_tier(
    excess_by_seed: list[dict[str, float]], name: str, hot_links: int
) -> None:
    # Popular links are hit in the decoded tier; the packed tier must not let them age out as new codes
    # come, or every emptying of the decoded tier sends them all back to Redis at once.
    _check(excess_by_seed, f"decoded {name} {hot_links}", WORST_POPULAR)


def test_evicting_keeps_the_shards_even() -> None:
    # Each eviction takes from the fuller of two shards: with a fixed order instead, the shards' sizes
    # would drift apart like a random walk as new codes land in them by their hash.
    store = PackedLinks(CAPACITY * ONE, shard_bytes=SHARD_BYTES // 4)  # 16 shards of ~84 records
    for n in range(100_000):
        store.put(f"e{n}", record(f"e{n}"))
    sizes = [len(shard) for shard in store._shards]
    assert len(sizes) == 16 and max(sizes) - min(sizes) <= 12, sizes


def test_a_put_gives_at_most_so_many_records_in_use_a_second_chance() -> None:
    # Every record in use: unbounded, one put would send each to the back of the queue three times over
    # before dropping one (a pause that grows with the cache). Each code has a mark slot of its own, so the
    # marks count exactly the second chances given.
    store = PackedLinks(200 * ONE, shard_bytes=1 << 40)  # one shard: its queue is the order of the puts
    codes: list[str] = []
    slots: set[int] = set()
    for n in range(10_000):
        code, slot = f"c{n:04}", hash(f"c{n:04}") & store._mark_mask
        if slot not in slots and len(codes) < 200:
            slots.add(slot)
            codes.append(code)
    assert len(codes) == 200 and SECOND_CHANCES < 200  # else the order checked below means nothing
    for code in codes:
        store.put(code, record(code))
    for code in codes * MAX_MARK:
        store.get(code)
    marks_before = sum(store._marks)
    store.put("n0000", record("n0000"))
    assert marks_before - sum(store._marks) == SECOND_CHANCES
    # The first SECOND_CHANCES went to the back with one use less; the next one, still in use, was dropped.
    assert list(store._shards[0]) == [*codes[SECOND_CHANCES + 1 :], *codes[:SECOND_CHANCES], "n0000"]
    assert store.bytes == 200 * ONE
