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
from attribution.rates import RateStore, RatesUpdate
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


def test_a_list_written_whole_per_version_is_appended_to_as_changes(settings) -> None:
    """A merchant's versions stored before sku_changes (each with its whole table) stay as they are; the
    next change is stored as changes from the last of them, and every version reads back whole."""
    keys = Keys(settings.redis_prefix)
    before = [
        b'{"version":1,"effective_ms":1000,"default_bps":500,"categories":{},"skus":{},"creators":{}}',
        b'{"version":2,"effective_ms":2000,"default_bps":500,"categories":{},"skus":{"A":100,"B":200},'
        b'"creators":{}}',
    ]

    async def scenario() -> None:
        r = Redis.from_url(settings.redis_url)
        await r.rpush(keys.rates("old"), *before)
        store = RateStore(r, keys)
        third = await store.set_sku_rates("old", 3000, {"A": None, "C": 300})
        unchanged = await store.set_sku_rates("old", 4000, {"B": 200})
        raws = await store.raw_versions("old")
        versions = await store.versions("old")
        await r.aclose()
        assert raws[:2] == before and len(raws) == 3 and unchanged.version == third.version == 3
        assert msgspec.json.decode(raws[2])["sku_changes"] == {"A": None, "C": 300}
        assert [dict(v.skus) for v in versions] == [{}, {"A": 100, "B": 200}, {"B": 200, "C": 300}]

    asyncio.run(scenario())


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
