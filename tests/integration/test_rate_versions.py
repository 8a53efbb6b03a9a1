"""Rate versions on a real Redis (attribution/rates.py): a version stores only the SKU rates it changed, and
reading the versions back gives every version's whole table, as storing each table whole did. Checked
against a model that keeps each table whole, over seeded random changes, and on a list written in the
format before this one. The key grows with the changes, not with the catalog once per version."""

from __future__ import annotations

import asyncio
import random

import msgspec
import pytest
from redis.asyncio import Redis

from attribution.attributor import Attributor
from attribution.rates import RateStore, RatesUpdate, StoredVersion, initial_version
from core.clickid import ClickIds
from core.keys import Keys
from tests.integration.attributionhelp import add_merchant

pytestmark = [pytest.mark.redis]
T0 = 1_790_000_000_000
SKUS = [f"SKU-{n}" for n in range(12)]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_every_version_reads_back_as_the_whole_table_it_was(settings, seed: int) -> None:
    rng = random.Random(seed)
    keys = Keys(settings.redis_prefix)

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0, default_bps=800)
        store = RateStore(r, keys)
        # The model: each version's head and its whole SKU table, as the storage before kept them.
        model = [(1, 800, {}, {}, {})]
        for step in range(40):
            _, default, categories, creators, table = model[-1]
            if rng.random() < 0.3:
                update = RatesUpdate(
                    default_rate_bps=rng.choice([default, rng.randint(0, 10_000)]),
                    categories=rng.choice([categories, {"shoes": rng.randint(0, 10_000)}]),
                    creators=rng.choice([creators, {}, {"alice": rng.randint(0, 10_000)}]),
                )
                got = await store.set_rates("m1", T0 + step, update)
                after = (update.default_rate_bps, update.categories, update.creators, table)
            else:
                change = {s: rng.choice([None, rng.randint(0, 10_000)]) for s in rng.sample(SKUS, 3)}
                got = await store.set_sku_rates("m1", T0 + step, change)
                new = {**table, **{s: rate for s, rate in change.items() if rate is not None}}
                new = {s: rate for s, rate in new.items() if change.get(s, 0) is not None}
                after = (default, categories, creators, new)
            if after != model[-1][1:]:
                model.append((model[-1][0] + 1, *after))
            assert got.version == model[-1][0]  # an unchanged table appends nothing
            assert dict(got.skus) == model[-1][4]
        versions = await store.versions("m1")
        await r.aclose()
        assert [(v.version, v.default_bps, v.categories, v.creators, dict(v.skus)) for v in versions] == model

    asyncio.run(scenario())


def test_a_list_written_whole_per_version_is_rewritten_once_as_changes(settings) -> None:
    """A merchant's versions stored by an earlier release (each with its whole table) read as before, and
    the next change rewrites them once as their changes (helper-72: every later write read and folded
    them again, 567 ms an append for 20 versions of 50,000 SKUs): the same versions, the same tables."""
    keys = Keys(settings.redis_prefix)
    table = {f"SKU-{n}": 100 + n % 7 for n in range(2_000)}
    before = [
        msgspec.json.encode(
            {"version": n, "effective_ms": 1000 * n, "default_bps": 500, "categories": {}, "creators": {}}
            | {"skus": {**table, "SKU-0": n}}
        )
        for n in range(1, 21)
    ]

    async def scenario():
        r = Redis.from_url(settings.redis_url)
        await r.rpush(keys.rates("old"), *before)
        store = RateStore(r, keys)
        read_before = [dict(v.skus) for v in await store.versions("old")]
        unchanged = await store.set_sku_rates("old", 30_000, {"SKU-1": table["SKU-1"]})
        assert await store.raw_versions("old") == before  # an unchanged table writes nothing
        changed = await store.set_sku_rates("old", 30_000, {"SKU-1": None, "NEW": 300})
        raws = await store.raw_versions("old")
        versions = await store.versions("old")
        await r.aclose()
        assert (unchanged.version, changed.version) == (20, 21)
        assert [v.version for v in versions] == list(range(1, 22))
        assert [dict(v.skus) for v in versions[:20]] == read_before
        last = {**read_before[-1], "NEW": 300}
        del last["SKU-1"]
        assert dict(versions[-1].skus) == last
        assert all(msgspec.json.decode(raw)["sku_changes"] is not None for raw in raws)
        assert sum(map(len, raws)) < sum(map(len, before)) / 10

    asyncio.run(scenario())


def test_an_earlier_release_refuses_a_version_stored_as_changes() -> None:
    """A version as the release before sku_changes decoded it: reading a version stored as changes, it
    would see no SKU rates and write that back whole (helper-72). `skus` is null there so it refuses it."""

    class EarlierStoredVersion(msgspec.Struct, frozen=True):
        version: int
        effective_ms: int
        default_bps: int
        categories: dict[str, int] = {}
        skus: dict[str, int] = {}
        creators: dict[str, int] = {}

    stored = StoredVersion(2, 2_000, 500, {}, creators={}, sku_changes={"A": 1_500})
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(stored), type=EarlierStoredVersion)
    first = initial_version(None, 1_000, RatesUpdate(default_rate_bps=500))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(first, type=EarlierStoredVersion)


def test_the_key_grows_with_the_changes_not_with_the_catalog(settings) -> None:
    """helper-68's finding, scaled down: a catalog of many SKUs changed one product at a time. Stored whole,
    each version repeated the catalog (80 changes of 50,000 SKUs: a 158 MB key)."""
    keys = Keys(settings.redis_prefix)
    catalog, changes = 5_000, 40

    async def scenario() -> tuple[int, int, int]:
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0)
        store = RateStore(r, keys)
        await store.set_sku_rates("m1", T0, {f"SKU-{n}": 500 for n in range(catalog)})
        first = sum(map(len, await store.raw_versions("m1")))
        for n in range(changes):
            await store.set_sku_rates("m1", T0 + n, {f"SKU-{n}": 600 + n})
        whole = sum(map(len, await store.raw_versions("m1")))
        terms = await Attributor(r, keys, None, ClickIds(settings.secret_bytes))._terms("m1")
        await r.aclose()
        last = terms.version_at(T0 + changes)
        assert (last.skus["SKU-0"], last.skus["SKU-39"], last.skus["SKU-40"]) == (600, 639, 500)
        assert terms.version_at(T0).skus["SKU-39"] == 500
        return first, whole, len(terms.versions)

    first, whole, count = asyncio.run(scenario())
    assert count == changes + 2
    assert whole < first + changes * 300, (first, whole)  # each change: its head and one SKU


def test_concurrent_changes_of_different_skus_all_land(settings) -> None:
    keys = Keys(settings.redis_prefix)

    async def scenario() -> dict:
        r = Redis.from_url(settings.redis_url)
        await add_merchant(r, keys, "m1", ["shop.m1.example"], T0)
        stores = [RateStore(Redis.from_url(settings.redis_url), keys) for _ in range(8)]
        await asyncio.gather(*(s.set_sku_rates("m1", T0 + n, {f"SKU-{n}": n}) for n, s in enumerate(stores)))
        versions = await RateStore(r, keys).versions("m1")
        for s in stores:
            await s._redis.aclose()
        await r.aclose()
        assert [v.version for v in versions] == list(range(1, 10))
        return dict(versions[-1].skus)

    assert asyncio.run(scenario()) == {f"SKU-{n}": n for n in range(8)}
