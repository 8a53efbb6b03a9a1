"""Catalog, rates and secrets through HTTP against the real Redis: every list and field a request carries is
bounded (refused whole, nothing written), search reads a bounded page through the index with a cursor,
each key sees only what it may, at most two webhook secrets verify, and a big PUT never holds the loop."""

from __future__ import annotations

import asyncio
import gc
import time

import msgspec
import orjson
import pytest
from redis.asyncio import Redis

from attribution import catalog, search
from attribution.catalog import CatalogStore, Product
from attribution.merchants import MAX_ACTIVE_SECRETS, MerchantStore
from core import validate
from core.keys import Keys
from tests.integration.apphelp import ADMIN, running_app
from tests.integration.test_webhooks import signed

pytestmark = pytest.mark.redis

WORDS = ["trail", "running", "shoe", "cap", "jacket", "wool", "sock", "bag", "light", "pro"]


def merchant(merchant_id: str) -> dict:
    return {
        "merchant_id": merchant_id,
        "name": merchant_id,
        "domains": [f"{merchant_id}.example.com"],
        "currency": "EUR",
        "default_rate_bps": 800,
    }


def product(merchant_id: str, i: int, **extra) -> dict:
    return {
        "sku": f"SKU-{i:05d}",
        "title": " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7)) + f" model {i}",
        "url": f"https://{merchant_id}.example.com/p/{i}",
        "category": f"cat{i % 4}",
        "price_minor": 1000 + i,
        "currency": "EUR",
        **extra,
    }


async def key_for(client, **scope) -> dict:
    response = await client.post("/api/keys", json=scope, headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"authorization": f"Bearer {response.json()['key']}"}


async def add_merchants(client, *ids: str) -> None:
    for merchant_id in ids:
        response = await client.post("/api/merchants", json=merchant(merchant_id), headers=ADMIN)
        assert response.status_code == 201, response.text


async def stored(settings, merchant_id: str) -> tuple[int, int]:
    """(products in the catalog hash, entries in its search index)."""
    redis, keys = Redis.from_url(settings.redis_url), Keys(settings.redis_prefix)
    try:
        return await redis.hlen(keys.catalog(merchant_id)), await redis.zcard(keys.catalog_index(merchant_id))
    finally:
        await redis.aclose()


OVER_LIMIT_BODIES = {
    "list_over_per_put": lambda: [product("m1", i) for i in range(catalog.MAX_PRODUCTS_PER_PUT + 1)],
    "wrapped_over_per_put": lambda: {
        "products": [product("m1", i) for i in range(catalog.MAX_PRODUCTS_PER_PUT + 1)]
    },
}
INVALID_BODIES = {
    # one bad product anywhere refuses the whole PUT: the good ones before it are not written either
    "last_sku_too_long": [product("m1", 1), product("m1", 2, sku="S" * (catalog.MAX_SKU_CHARS + 1))],
    "last_title_too_long": [product("m1", 1), product("m1", 2, title="t" * (catalog.MAX_TITLE_CHARS + 1))],
    "category_with_newline": [product("m1", 1), product("m1", 2, category="shoes\n")],
    "url_not_http": [product("m1", 1), product("m1", 2, url="javascript:alert(1)")],
    "url_too_long": [product("m1", 1), product("m1", 2, url="https://m1.example.com/" + "a" * 2048)],
    "price_too_big": [product("m1", 1), product("m1", 2, price_minor=catalog.MAX_PRICE_MINOR + 1)],
    "currency_with_newline": [product("m1", 1), product("m1", 2, currency="EUR\n")],
    "unknown_field": [product("m1", 1), product("m1", 2, colour="red")],
    "wrong_type": [product("m1", 1), product("m1", 2, price_minor="12")],
    "not_a_list": {"items": [product("m1", 1)]},
}


def _product_json(i: int) -> bytes:
    return orjson.dumps(product("m1", i))


# A key given twice, whichever copy a parser keeps (core/repeats.py): in the wrapper, in the last product.
REPEATED_KEY_BODIES = {
    "products_twice": b'{"products": [' + _product_json(1) + b'], "products": [' + _product_json(2) + b"]}",
    "last_price_twice": b"["
    + _product_json(1)
    + b","
    + _product_json(2).replace(b'"price_minor":', b'"price_minor":1,"price_minor":')
    + b"]",
    "last_sku_twice": b"["
    + _product_json(1)
    + b","
    + _product_json(2).replace(b"{", b'{"sku":"X",', 1)
    + b"]",
}


def test_catalog_puts_past_a_bound_are_refused_whole(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await add_merchants(client, "m1")
            url = "/api/merchants/m1/catalog"
            for name, build in OVER_LIMIT_BODIES.items():
                response = await client.put(url, json=build(), headers=ADMIN)
                assert response.status_code == 413, (name, response.text)
                assert response.json()["error"]["code"] == "too_many_products"
            for name, body in INVALID_BODIES.items():
                response = await client.put(url, json=body, headers=ADMIN)
                assert response.status_code == 422, (name, response.text)
                assert response.json()["error"]["code"] == "invalid"
            truncated = await client.put(url, content=b'[{"sku": ', headers=ADMIN)
            assert truncated.status_code == 400 and truncated.json()["error"]["code"] == "malformed_json"
            for depth in (2_000, 100_000):  # past the parser's recursion (a 500 before), within the size cap
                deep = b"[" * depth + b"]" * depth
                for body in (deep, b'{"products": ' + deep + b"}", b'[{"sku": ' + deep + b"}]"):
                    response = await client.put(url, content=body, headers=ADMIN)
                    assert response.status_code in (400, 422), (depth, body[:20], response.text)
            for name, body in REPEATED_KEY_BODIES.items():
                response = await client.put(url, content=body, headers=ADMIN)
                assert response.status_code == 400, (name, response.text)
                assert response.json()["error"]["code"] == "repeated_key", name
            assert await stored(settings, "m1") == (0, 0)
            full = [product("m1", i) for i in range(catalog.MAX_PRODUCTS_PER_PUT)]
            response = await client.put(url, json={"products": full}, headers=ADMIN)
            assert response.status_code == 200 and response.json()["upserted"] == catalog.MAX_PRODUCTS_PER_PUT

    asyncio.run(scenario())


def test_a_merchant_catalog_is_bounded(settings, redis_client, monkeypatch) -> None:
    """Past MAX_PRODUCTS_PER_MERCHANT a PUT adding products is refused whole; one updating products it
    already has still passes."""
    monkeypatch.setattr(catalog, "MAX_PRODUCTS_PER_MERCHANT", 10)

    async def scenario():
        async with running_app(settings) as (_, client):
            await add_merchants(client, "m1")
            url = "/api/merchants/m1/catalog"
            first = [product("m1", i) for i in range(6)]
            assert (await client.put(url, json=first, headers=ADMIN)).status_code == 200
            more = [product("m1", i) for i in range(3, 11)]  # 5 new: 11 in all
            refused = await client.put(url, json=more, headers=ADMIN)
            assert refused.status_code == 413 and refused.json()["error"]["code"] == "catalog_full"
            assert (await stored(settings, "m1"))[0] == 6
            again = [product("m1", i, price_minor=1) for i in range(6)] + [product("m1", i) for i in (6, 7)]
            assert (await client.put(url, json=again, headers=ADMIN)).status_code == 200
            assert (await stored(settings, "m1"))[0] == 8

    asyncio.run(scenario())


async def _all_pages(client, headers: dict, params: str) -> tuple[list[tuple[str, str]], int]:
    seen: list[tuple[str, str]] = []
    cursor, pages = "", 0
    while True:
        response = await client.get(f"/api/catalog?{params}&cursor={cursor}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["products"]) <= search.MAX_RESULTS
        seen += [(p["merchant_id"], p["sku"]) for p in body["products"]]
        pages += 1
        if body["next_cursor"] is None:
            return seen, pages
        cursor = body["next_cursor"]


def test_search_pages_through_the_index_once_per_product(settings, redis_client) -> None:
    """Every product of every catalog that matches comes exactly once across pages, whatever the filters,
    and an update moves a product in the index (its old words no longer find it)."""
    count = 240

    async def scenario():
        async with running_app(settings) as (_, client):
            await add_merchants(client, "ma", "mb", "mc")
            expected: dict[str, list[dict]] = {}
            for merchant_id in ("ma", "mb", "mc"):
                products = [product(merchant_id, i) for i in range(count)]
                expected[merchant_id] = products
                response = await client.put(
                    f"/api/merchants/{merchant_id}/catalog", json=products, headers=ADMIN
                )
                assert response.status_code == 200, response.text
            cases = {
                "": lambda p: True,
                "q=trail": lambda p: "trail" in p["title"].split(),
                "q=TRA": lambda p: "trail" in p["title"].split(),
                "q=model%201": lambda p: p["title"].split()[-1].startswith("1"),
                "q=cap+wool": lambda p: {"cap", "wool"} <= set(p["title"].split()),
                "category=cat1": lambda p: p["category"] == "cat1",
                "category=cat2&q=shoe": lambda p: p["category"] == "cat2" and "shoe" in p["title"].split(),
                "q=sku-0001": lambda p: p["sku"].startswith("SKU-0001"),
                "q=zzz": lambda p: False,
                "merchant_id=mb&q=light": lambda p: "light" in p["title"].split(),
            }
            for params, wanted in cases.items():
                for limit in (7, search.MAX_RESULTS):
                    seen, pages = await _all_pages(client, ADMIN, f"{params}&limit={limit}")
                    merchants = ["mb"] if "merchant_id=mb" in params else ["ma", "mb", "mc"]
                    want = [(m, p["sku"]) for m in merchants for p in expected[m] if wanted(p)]
                    assert sorted(seen) == sorted(want), params
                    assert len(seen) == len(set(seen)), params
                    assert pages <= len(want) // limit + 1 + len(merchants), params
            update = [product("ma", 0, title="Zephyr boot")]
            assert (
                await client.put("/api/merchants/ma/catalog", json=update, headers=ADMIN)
            ).status_code == 200
            found, _ = await _all_pages(client, ADMIN, "q=zephyr")
            assert found == [("ma", "SKU-00000")]
            old_words, _ = await _all_pages(client, ADMIN, "merchant_id=ma&q=model%200")
            assert ("ma", "SKU-00000") not in old_words

    asyncio.run(scenario())


def test_one_search_reads_a_bounded_part_of_the_catalogs(settings, redis_client, monkeypatch) -> None:
    """With 5,000 products in each of two catalogs, a page never reads more than MAX_SCANNED_PER_SEARCH
    index entries and decodes no more products than that, and no call reads a whole catalog."""
    reads: list[int] = []
    original = CatalogStore._matches

    async def counting(self, merchant_id, entries, *args):
        reads.append(len(entries))
        return await original(self, merchant_id, entries, *args)

    monkeypatch.setattr(CatalogStore, "_matches", counting)
    banned = {"hgetall", "hvals", "hkeys"}
    calls: list[str] = []

    async def scenario():
        async with running_app(settings) as (app, client):
            await add_merchants(client, "ma", "mb")
            for merchant_id in ("ma", "mb"):
                products = [product(merchant_id, i) for i in range(catalog.MAX_PRODUCTS_PER_PUT)]
                response = await client.put(
                    f"/api/merchants/{merchant_id}/catalog", json=products, headers=ADMIN
                )
                assert response.status_code == 200, response.text
            redis = app.ctx.redis
            original_execute = redis.execute_command

            async def spy(*args, **options):
                calls.append(str(args[0]).lower())
                return await original_execute(*args, **options)

            monkeypatch.setattr(redis, "execute_command", spy)
            for params in ("", "q=model", "q=model%204999", "q=trail+zzz", "category=cat3&q=pro"):
                reads.clear()
                response = await client.get(f"/api/catalog?{params}", headers=ADMIN)
                assert response.status_code == 200, response.text
                assert sum(reads) <= search.MAX_SCANNED_PER_SEARCH, (params, reads)
                assert len(response.json()["products"]) <= search.MAX_RESULTS
            assert not banned & set(calls), set(calls)

    asyncio.run(scenario())


def test_a_catalog_stored_before_the_index_is_indexed_on_first_search(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await add_merchants(client, "legacy")
            redis, keys = Redis.from_url(settings.redis_url), Keys(settings.redis_prefix)
            products = [Product(**product("legacy", i)) for i in range(120)]
            await redis.hset(
                keys.catalog("legacy"), mapping={p.sku: msgspec.json.encode(p) for p in products}
            )
            await redis.aclose()
            seen, _ = await _all_pages(client, ADMIN, "merchant_id=legacy&limit=50")
            assert sorted(sku for _, sku in seen) == sorted(p.sku for p in products)
            assert (await stored(settings, "legacy"))[1] > 0

    asyncio.run(scenario())


SCOPES = [
    # (who, query, status, {merchant: (earn_rate_bps, earn_rule)} shown)
    ("admin", "", 200, {"ma": (800, "default"), "mb": (800, "default")}),
    ("admin", "creator_id=alice", 200, {"ma": (2000, "creator"), "mb": (3000, "creator")}),
    ("admin", "merchant_id=mb&creator_id=alice", 200, {"mb": (3000, "creator")}),
    ("alice", "", 200, {"ma": (2000, "creator"), "mb": (3000, "creator")}),
    ("alice", "creator_id=alice", 200, {"ma": (2000, "creator"), "mb": (3000, "creator")}),
    ("alice", "creator_id=bob", 403, {}),
    ("alice", "merchant_id=ma", 200, {"ma": (2000, "creator")}),
    ("bob", "", 200, {"ma": (800, "default"), "mb": (800, "default")}),
    ("bob", "creator_id=alice", 403, {}),
    ("ma", "", 200, {"ma": (800, "default")}),
    ("ma", "merchant_id=ma", 200, {"ma": (800, "default")}),
    ("ma", "merchant_id=mb", 403, {}),
    ("ma", "creator_id=alice", 200, {"ma": (2000, "creator")}),  # its own override, never mb's
    ("ma", "merchant_id=mb&creator_id=alice", 403, {}),
    ("mb", "creator_id=alice", 200, {"mb": (3000, "creator")}),
]


def test_catalog_scopes(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await add_merchants(client, "ma", "mb")
            for merchant_id, alice_bps in (("ma", 2000), ("mb", 3000)):
                items = [product(merchant_id, 1), product(merchant_id, 2)]
                await client.put(f"/api/merchants/{merchant_id}/catalog", json=items, headers=ADMIN)
                rates = {"default_rate_bps": 800, "creators": {"alice": alice_bps}}
                response = await client.put(f"/api/merchants/{merchant_id}/rates", json=rates, headers=ADMIN)
                assert response.status_code == 200, response.text
            keys = {
                "admin": ADMIN,
                "alice": await key_for(client, creator_id="alice"),
                "bob": await key_for(client, creator_id="bob"),
                "ma": await key_for(client, merchant_id="ma"),
                "mb": await key_for(client, merchant_id="mb"),
            }
            for who, params, status, shown in SCOPES:
                response = await client.get(f"/api/catalog?{params}", headers=keys[who])
                assert response.status_code == status, (who, params, response.text)
                if status != 200:
                    assert response.json()["error"]["code"] == "forbidden"
                    continue
                got = {
                    (p["merchant_id"], p["earn_rate_bps"], p["earn_rule"])
                    for p in response.json()["products"]
                }
                assert got == {(m, bps, rule) for m, (bps, rule) in shown.items()}, (who, params)
            assert (await client.get("/api/catalog")).status_code == 401

    asyncio.run(scenario())


BAD_PARAMS = [
    "limit=0",
    f"limit={search.MAX_RESULTS + 1}",
    "limit=ten",
    "limit=%D9%A5",  # an Arabic-Indic five
    "q=" + "x" * (search.MAX_QUERY_CHARS + 1),
    "q=" + "+".join(f"w{i}" for i in range(search.MAX_QUERY_WORDS + 1)),
    "category=" + "c" * (validate.MAX_CATEGORY_CHARS + 1),
    "category=shoes%0a",
    "merchant_id=a%20b",
    "merchant_id=ma%0a",
    "merchant_id=",
    "creator_id=" + "c" * 65,
    "creator_id=alice%0a",
    "cursor=!!!",
    "cursor=" + "A" * (search.MAX_CURSOR_CHARS + 1),
]


def test_bad_search_parameters_are_a_400(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await add_merchants(client, "ma")
            for params in BAD_PARAMS:
                response = await client.get(f"/api/catalog?{params}", headers=ADMIN)
                assert response.status_code == 400, (params, response.text)
                assert response.json()["error"]["code"] == "bad_query"

    asyncio.run(scenario())


BAD_RATES = [
    {"default_rate_bps": 800, "categories": {f"c{i}": 1 for i in range(1_001)}},
    {"default_rate_bps": 800, "creators": {f"c{i}": 1 for i in range(1_001)}},
    {"default_rate_bps": 800, "creators": {"alice\n": 100}},
    {"default_rate_bps": 800, "creators": {"a b": 100}},
    {"default_rate_bps": 800, "categories": {"": 100}},
    {"default_rate_bps": 800, "categories": {"c" * 65: 100}},
    {"default_rate_bps": 800, "categories": {"shoes": 10_001}},
]


def test_rate_maps_past_a_bound_are_refused(settings, redis_client) -> None:
    async def scenario():
        async with running_app(settings) as (_, client):
            await add_merchants(client, "ma")
            for body in BAD_RATES:
                response = await client.put("/api/merchants/ma/rates", json=body, headers=ADMIN)
                assert response.status_code == 422, (list(body), response.text)
            redis, keys = Redis.from_url(settings.redis_url), Keys(settings.redis_prefix)
            assert await redis.llen(keys.rates("ma")) == 1  # only the version made at registration
            await redis.aclose()

    asyncio.run(scenario())


def test_at_most_two_secrets_verify_whatever_the_rotations(settings, redis_client) -> None:
    """Each rotation keeps only the secret it replaces; a third one retires the oldest at once, so an
    unsigned delivery costs at most two HMACs. Concurrent rotations keep the bound too."""
    item = {"sku": "S", "unit_price_minor": 1, "quantity": 1}
    data = {"order_id": "A-1", "click_id": "x", "currency": "EUR", "occurred_at": "2026-11-27T10:00:00Z"}
    body = msgspec.json.encode({"type": "order.created", "data": {**data, "items": [item]}})

    async def scenario():
        async with running_app(settings) as (_, client):
            created = await client.post("/api/merchants", json=merchant("ma"), headers=ADMIN)
            secrets = [created.json()["webhook_secret"]]
            for _ in range(3):
                rotated = await client.post("/api/merchants/ma/secrets", headers=ADMIN)
                assert rotated.status_code == 201
                secrets.append(rotated.json()["webhook_secret"])
            redis = Redis.from_url(settings.redis_url)
            store = MerchantStore(redis, Keys(settings.redis_prefix))
            assert await store.active_secrets("ma", int(time.time() * 1000)) == [secrets[-1], secrets[-2]]
            statuses = []
            for n, secret in enumerate(secrets):
                headers = signed(secret, body, msg_id=f"rot-{n}")
                statuses.append(
                    (await client.post("/webhooks/orders/ma", content=body, headers=headers)).status_code
                )
            assert statuses == [401, 401, 202, 202]
            await asyncio.gather(
                *(client.post("/api/merchants/ma/secrets", headers=ADMIN) for _ in range(10))
            )
            active = await store.active_secrets("ma", int(time.time() * 1000))
            assert len(active) == MAX_ACTIVE_SECRETS
            assert await redis.hlen(Keys(settings.redis_prefix).merchant_secrets("ma")) == MAX_ACTIVE_SECRETS
            await redis.aclose()

    asyncio.run(scenario())


async def _put_timing_the_loop(client, body: bytes):
    """(response, the longest the loop's thread computed without yielding) of a catalog PUT of `body`."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        # CPU time of the loop's own thread between two turns of this task: what the handler computed
        # without yielding. Wall time would also count the machine preempting the test (a shared 2-core
        # box), which is not the handler holding the loop.
        last = time.thread_time()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.thread_time()
            gaps.append(now - last)
            last = now

    # A collection of the objects earlier tests left in this process is not the handler's work. After
    # 2,958 tests in one process the full PUT below once saw 50 ms (12 ms when run alone, before and after
    # the change it ran for), most likely such a collection.
    gc.collect()
    gc.freeze()
    try:
        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        response = await client.put("/api/merchants/ma/catalog", content=body, headers=ADMIN)
        done.set()
        await tick
    finally:
        gc.unfreeze()
    return response, max(gaps)


def test_a_full_catalog_put_does_not_hold_the_event_loop(settings, redis_client) -> None:
    """While the largest legal PUT (5,000 products, about 7 MiB) is decoded, checked and written, a task
    on the same loop still runs every few milliseconds."""
    long_path = "a" * 1200
    products = [product("ma", i, url=f"https://ma.example.com/{long_path}/{i}") for i in range(5_000)]
    body = msgspec.json.encode(products)
    assert len(body) < 8 * 1024 * 1024
    max_gap_s = 0.05  # measured: about 12-20 ms here (the body read and its one bounds pass), 90 ms before

    async def scenario():
        async with running_app(settings) as (_, client):
            await add_merchants(client, "ma")
            response, gap_s = await _put_timing_the_loop(client, body)
            assert response.status_code == 200, response.text
            assert gap_s < max_gap_s, f"the loop computed {gap_s * 1000:.0f} ms without yielding"

    asyncio.run(scenario())


ENTRY_BYTES = 8 * 1024 * 1024 - 64  # up to the body limit, as an attacker would fill it
FLOODS = {
    "zeros": lambda n: b"[" + b",".join([b"0"] * n) + b"]",
    "empty objects": lambda n: b"[" + b",".join([b"{}"] * n) + b"]",
    "empty strings": lambda n: b"[" + b",".join([b'""'] * n) + b"]",
    "empty lists": lambda n: b"[" + b",".join([b"[]"] * n) + b"]",
    "wrapped": lambda n: b'{"products":[' + b",".join([b"0"] * n) + b"]}",
    "wrapped, key escaped": lambda n: b'{"product\\u0073":[' + b",".join([b"0"] * n) + b"]}",
}


@pytest.mark.parametrize("kind", list(FLOODS))
def test_a_put_of_millions_of_tiny_entries_is_refused_without_holding_the_loop(
    settings, redis_client, kind: str
) -> None:
    """An adversarial pass: 8 MiB of tiny entries was refused (413) only after split_body's decode, one C
    call that made an object per entry and held the loop 160-310 ms. The read now stops at the first
    entry too many (catalog._slots)."""
    build = FLOODS[kind]
    body = build(ENTRY_BYTES // (len(build(2)) - len(build(1))))
    assert len(body) <= 8 * 1024 * 1024
    max_gap_s = 0.05

    async def scenario():
        async with running_app(settings) as (_, client):
            await add_merchants(client, "ma")
            response, gap_s = await _put_timing_the_loop(client, body)
            assert response.status_code == 413, response.text
            assert response.json()["error"]["code"] == "too_many_products"
            assert gap_s < max_gap_s, f"the loop computed {gap_s * 1000:.0f} ms without yielding"

    asyncio.run(scenario())


def test_a_catalog_put_that_keeps_losing_to_other_writers_is_a_409(settings, redis_client) -> None:
    """Concurrent PUTs of the same SKUs retry each chunk CAS_ATTEMPTS times; one that still loses gets a
    JSON 409 telling it to retry (it used to escape as a RuntimeError: a 500), products already written
    stay whole."""

    async def always_changed(keys, args):
        return [0, args[1]]

    async def scenario():
        async with running_app(settings) as (app, client):
            await add_merchants(client, "m1")
            app.ctx.catalog._write_chunk = always_changed
            for body in ([product("m1", 1)], {"products": [product("m1", i) for i in range(60)]}):
                response = await client.put("/api/merchants/m1/catalog", json=body, headers=ADMIN)
                assert response.status_code == 409, response.text
                assert response.headers["content-type"] == "application/json"
                assert response.json()["error"]["code"] == "catalog_busy"

    asyncio.run(scenario())
