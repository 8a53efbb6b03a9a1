"""Merchant catalogs: `Keys.catalog(merchant_id)` is a hash sku → product (JSON), and
`Keys.catalog_index(merchant_id)` the search index of its products (attribution/search.py), kept in step with
the hash product by product. A product's own `rate_bps` is a rate rule, so an upsert that changes it appends
a rate version (see rates.py).

Every bound a catalog request can hit is here: products per PUT and per merchant, and each field's length
and range. An upsert is checked whole before anything is written, and written in small chunks (one atomic
script each) so that neither the event loop nor Redis is held long by one big catalog."""

from __future__ import annotations

import asyncio
import bisect
import functools
import re

import msgspec
from redis.asyncio import Redis

from attribution import currency, money, rules, search
from attribution.rates import RateStore, check_bps
from core import validate
from core.keys import Keys
from core.redisclient import hscan_values

# A PUT carries at most this many products: larger catalogs are sent in several PUTs.
MAX_PRODUCTS_PER_PUT = 5_000
# Products one merchant may hold: bounds the rate table (one entry per product rate) and the search index.
MAX_PRODUCTS_PER_MERCHANT = 50_000
MAX_SKU_CHARS = 128
MAX_TITLE_CHARS = 200
MAX_CATEGORY_CHARS = validate.MAX_CATEGORY_CHARS
MAX_PRODUCT_URL_BYTES = 2048  # the same bound as a link's destination (redirector/urls.py)
# The same bound as an order line's unit price (money.py): a catalog price can always be ordered.
MAX_PRICE_MINOR = money.MAX_UNIT_PRICE_MINOR
# Products decoded, checked and written per step: well under a millisecond of work, then the loop and
# Redis serve others (redirects share both).
CHUNK_PRODUCTS = 25
# After each step a catalog request leaves the loop to others (redirects first) for this long, so that it
# takes at most about a quarter of the loop however many steps it has. A full PUT takes ~0.5 s longer.
STEP_PAUSE_S = 0.002
# Index entries (and products) read and decoded per step of a search: well under a millisecond of work.
SEARCH_BATCH = 25
CAS_ATTEMPTS = 5  # a chunk whose products another PUT changed meanwhile is re-read and retried

_URL_RE = re.compile(r"https?://[^/?#@\\\s]+(?:[/?#]\S*)?", re.IGNORECASE)
# Control characters and line/paragraph separators: never part of a SKU, title or category.


class Product(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: str
    title: str
    url: str
    price_minor: int
    currency: str
    category: str = ""
    rate_bps: int | None = None


class CatalogBusy(RuntimeError):
    """Other writers kept changing the same products for CAS_ATTEMPTS rounds (409: the PUT may be sent
    again; products already written are whole)."""


class CatalogTooLarge(ValueError):
    """A catalog PUT over a count limit (413)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_product(product: Product) -> None:
    """Every field within its bounds, or ValueError with the reason."""
    sku = product.sku
    if not 1 <= len(sku) <= MAX_SKU_CHARS or validate.has_control_chars(sku) or sku != sku.strip():
        raise ValueError(
            f"sku {sku[:40]!r}: must be 1-{MAX_SKU_CHARS} chars, no control chars or outer spaces"
        )
    if len(product.title) > MAX_TITLE_CHARS or validate.has_control_chars(product.title):
        raise ValueError(f"product {sku!r}: title must be at most {MAX_TITLE_CHARS} chars, no control chars")
    if len(product.category) > MAX_CATEGORY_CHARS or validate.has_control_chars(product.category):
        raise ValueError(f"product {sku!r}: category must be at most {MAX_CATEGORY_CHARS} chars")
    url = product.url
    if len(url.encode("utf-8", "surrogatepass")) > MAX_PRODUCT_URL_BYTES or not _URL_RE.fullmatch(url):
        raise ValueError(f"product {sku!r}: url must be http(s), at most {MAX_PRODUCT_URL_BYTES} bytes")
    if not 0 <= product.price_minor <= MAX_PRICE_MINOR:
        raise ValueError(f"product {sku!r}: price_minor must be 0-{MAX_PRICE_MINOR}")
    if not currency.is_iso(product.currency):  # a code money can be booked in, not three capitals
        raise ValueError(f"product {sku!r}: currency must be an ISO 4217 code such as EUR")
    if product.rate_bps is not None:
        check_bps(product.rate_bps, f"rate_bps of {sku!r}")


@functools.lru_cache(maxsize=4)
def _slots(limit: int) -> tuple[msgspec.json.Decoder, msgspec.json.Decoder]:
    """Decoders of a catalog body's list (`[...]`, or `{"products": [...]}`) into at most `limit` slots, each
    entry left undecoded (msgspec.Raw): an array-like struct that forbids more items than its fields, so
    msgspec's parser stops at the first entry too many. A `list[Raw]` made an object for every entry
    first, one C call: 8 MiB of `[0,0,...]` held the event loop 190 ms before its 413."""
    fields = [(f"p{n}", msgspec.Raw, msgspec.Raw()) for n in range(limit)]
    slots = msgspec.defstruct("Slots", fields, array_like=True, forbid_unknown_fields=True)
    wrapped = msgspec.defstruct("WrappedSlots", [("products", slots)])
    return msgspec.json.Decoder(slots), msgspec.json.Decoder(wrapped)


_slots(MAX_PRODUCTS_PER_PUT)  # built at import (about 30 ms), not in the first PUT's turn of the event loop


def split_body(body: bytes, limit: int = MAX_PRODUCTS_PER_PUT) -> list[msgspec.Raw]:
    """The products of a catalog body (`[...]` or `{"products": [...]}`), each still undecoded: finding
    their bounds is one fast pass, decoding them is done in chunks (`decode_products`). Raises
    msgspec.DecodeError (not JSON), msgspec.ValidationError (wrong shape) or CatalogTooLarge (more than
    `limit` products: found at the first one too many)."""
    as_list, as_object = _slots(limit)
    # The first bracket or brace says which: a regex over leading whitespace held the loop 20 ms for 8 MiB
    # of it (helper-74); a wrong pick is only made for a body msgspec refuses either way.
    bracket, brace = body.find(b"["), body.find(b"{")
    decoder = as_list if bracket >= 0 and (brace < 0 or bracket < brace) else as_object
    try:
        decoded = decoder.decode(body)
    except RecursionError:  # arrays nested ~1,000 deep inside a product: msgspec's parser recurses
        raise msgspec.DecodeError("JSON nested too deeply") from None
    except msgspec.ValidationError as exc:
        if f"of at most length {limit}" in str(exc):
            raise CatalogTooLarge(
                "too_many_products",
                f"more than {limit} products in one PUT: send a bigger catalog in several",
            ) from None
        raise
    slots = decoded if decoder is as_list else decoded.products
    # An absent entry is the empty default: any JSON value has at least one byte.
    return [raw for raw in msgspec.structs.astuple(slots) if raw]


async def decode_products(raws: list[msgspec.Raw]) -> list[Product]:
    """Decode and check every product, a chunk at a time. ValueError names the first bad product."""
    decoder = msgspec.json.Decoder(Product)
    products: list[Product] = []
    for start in range(0, len(raws), CHUNK_PRODUCTS):
        for index in range(start, min(start + CHUNK_PRODUCTS, len(raws))):
            try:
                product = decoder.decode(raws[index])
            except msgspec.ValidationError as exc:
                raise ValueError(f"product {index}: {exc}") from None
            check_product(product)
            products.append(product)
        await asyncio.sleep(STEP_PAUSE_S)
    return products


# Compare-and-set of one chunk: every product's stored JSON must still be what the caller read (so its
# index entries are the ones being removed); then products and index entries change together.
# KEYS: catalog hash, index. ARGV: count, then per product: sku, old JSON ('' = none), new JSON,
# number of members to remove, those members, number to add, those members.
_WRITE_CHUNK = """
local n = tonumber(ARGV[1])
local pos = 2
local plan = {}
for i = 1, n do
  local sku, old, new = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2]
  local current = redis.call('HGET', KEYS[1], sku) or ''
  if current ~= old then return {0, sku} end
  local dels = tonumber(ARGV[pos + 3])
  local adds = tonumber(ARGV[pos + 4 + dels])
  plan[i] = {sku, new, pos + 4, dels, pos + 5 + dels, adds}
  pos = pos + 5 + dels + adds
end
for _, p in ipairs(plan) do
  redis.call('HSET', KEYS[1], p[1], p[2])
  for j = 0, p[4] - 1 do redis.call('ZREM', KEYS[2], ARGV[p[3] + j]) end
  for j = 0, p[6] - 1 do redis.call('ZADD', KEYS[2], 0, ARGV[p[5] + j]) end
end
return {1, ''}
"""
_COUNT_NEW = """
local new = 0
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
end
return {redis.call('HLEN', KEYS[1]), new}
"""


class CatalogStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._rates = RateStore(redis, keys)
        self._write_chunk = redis.register_script(_WRITE_CHUNK)
        self._count_new = redis.register_script(_COUNT_NEW)

    async def upsert(self, merchant_id: str, products: list[Product], now_ms: int) -> rules.RateVersion:
        """Write checked products (the last of a repeated SKU wins) with their index entries, then their
        rates as one version. Raises CatalogTooLarge, before writing anything, if the merchant would hold
        more than MAX_PRODUCTS_PER_MERCHANT (two concurrent PUTs may pass together: one PUT over at most).
        A failure midway leaves whole products written; the same PUT again completes it."""
        latest = {p.sku: p for p in products}
        catalog = self._keys.catalog(merchant_id)
        if latest:
            held, new = await self._count_new(keys=[catalog], args=list(latest))
            if held + new > MAX_PRODUCTS_PER_MERCHANT:
                raise CatalogTooLarge(
                    "catalog_full",
                    f"merchant would hold {held + new} products; at most {MAX_PRODUCTS_PER_MERCHANT}",
                )
        items = list(latest.values())
        for start in range(0, len(items), CHUNK_PRODUCTS):
            await self._write(merchant_id, items[start : start + CHUNK_PRODUCTS])
            await asyncio.sleep(STEP_PAUSE_S)
        # Always through the rate store: an unchanged table appends nothing.
        return await self._rates.set_sku_rates(merchant_id, now_ms, {p.sku: p.rate_bps for p in items})

    async def _write(self, merchant_id: str, chunk: list[Product]) -> None:
        catalog, index = self._keys.catalog(merchant_id), self._keys.catalog_index(merchant_id)
        for _ in range(CAS_ATTEMPTS):
            olds = await self._redis.hmget(catalog, [p.sku for p in chunk])
            args: list = [len(chunk)]
            for product, old in zip(chunk, olds, strict=True):
                before = set() if old is None else search.members(msgspec.json.decode(old, type=Product))
                after = search.members(product)
                gone, added = sorted(before - after), sorted(after - before)
                args += [product.sku, old or b"", msgspec.json.encode(product), len(gone), *gone]
                args += [len(added), *added]
            ok, _ = await self._write_chunk(keys=[catalog, index], args=args)
            if ok:
                return
            await asyncio.sleep(0)
        raise CatalogBusy(f"catalog of {merchant_id!r} kept changing under this PUT; retry it")

    async def search(
        self, merchant_ids: list[str], query: search.Query, creator_id: str, cursor: tuple[str, bytes]
    ) -> tuple[list[dict], str | None]:
        """One page of products matching `query` (search.py), each with the rate `creator_id` would earn
        on a click now, and the cursor of the next page (None: no more). Reads at most
        MAX_SCANNED_PER_SEARCH index entries and their products, over at most MAX_MERCHANTS_PER_SEARCH."""
        start_merchant, after = cursor
        ids = sorted(merchant_ids)
        found: list[dict] = []
        budget = search.MAX_SCANNED_PER_SEARCH
        for visited, merchant_id in enumerate(ids[bisect.bisect_left(ids, start_merchant) :]):
            if visited == search.MAX_MERCHANTS_PER_SEARCH:
                return found, search.encode_cursor(merchant_id, b"")
            last = after if merchant_id == start_merchant else b""
            key = query.resume_key(last) if last else None
            if key is None:
                last, key = b"", await self._key_word(merchant_id, query)
            low, high = query.bounds(key)
            last = last if last > low else b""
            version: rules.RateVersion | None = None
            while True:
                if budget == 0:
                    return found, search.encode_cursor(merchant_id, last)
                want = min(budget, SEARCH_BATCH)
                entries = await self._entries(merchant_id, b"(" + last if last else b"[" + low, high, want)
                budget -= len(entries)
                if not entries:
                    break
                version = version or await self._rates.current_head(merchant_id)
                if version is None:  # a merchant being created: no rates yet
                    break
                room = query.limit - len(found)
                for entry, view in await self._matches(
                    merchant_id, entries, query, key, creator_id, version, room
                ):
                    found.append(view)
                    if len(found) == query.limit:
                        return found, search.encode_cursor(merchant_id, entry)
                if len(entries) < want:
                    break
                last = entries[-1]
                await asyncio.sleep(STEP_PAUSE_S)
        return found, None

    async def _key_word(self, merchant_id: str, query: search.Query) -> str:
        """The query word with the fewest index entries in this catalog (one O(log n) count per word)."""
        if len(query.words) < 2:
            return query.pick_key({})
        index = self._keys.catalog_index(merchant_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for word in query.words:
                low, high = query.bounds(word)
                pipe.zlexcount(index, b"[" + low, b"[" + high)
            counts = await pipe.execute()
        return query.pick_key(dict(zip(query.words, counts, strict=True)))

    async def _entries(self, merchant_id: str, low: bytes, high: bytes, count: int) -> list[bytes]:
        index = self._keys.catalog_index(merchant_id)
        if low.startswith(b"("):
            return await self._redis.zrangebylex(index, low, b"[" + high, start=0, num=count)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebylex(index, low, b"[" + high, start=0, num=count)
            pipe.exists(index)
            pipe.exists(self._keys.catalog(merchant_id))
            entries, has_index, has_catalog = await pipe.execute()
        if has_index or not has_catalog or not await self.reindex(merchant_id):
            return entries
        # A catalog written before it had an index is indexed once, on its first search.
        return await self._redis.zrangebylex(index, low, b"[" + high, start=0, num=count)

    async def _matches(
        self,
        merchant_id: str,
        entries: list[bytes],
        query: search.Query,
        key: str,
        creator_id: str,
        version: rules.RateVersion,
        room: int,
    ) -> list[tuple[bytes, dict]]:
        """(entry, product view) of the first `room` entries whose products match, in entry order."""
        skus = [search.entry_sku(e) for e in entries]
        raws = await self._redis.hmget(self._keys.catalog(merchant_id), skus)
        matched = []
        for entry, raw in zip(entries, raws, strict=True):
            if raw is None:
                continue
            product = msgspec.json.decode(raw, type=Product)
            if query.matches(product, entry, key):
                matched.append((entry, product_view(merchant_id, product, version, creator_id)))
                if len(matched) == room:
                    break
        return matched

    async def reindex(self, merchant_id: str) -> int:
        """Rebuild the search index of a catalog written before it had one; returns the products indexed."""
        catalog, index = self._keys.catalog(merchant_id), self._keys.catalog_index(merchant_id)
        count = 0
        async for chunk in hscan_values(self._redis, catalog, CHUNK_PRODUCTS):
            entries = set()
            for raw in chunk:
                entries |= search.members(msgspec.json.decode(raw, type=Product))
            if entries:
                await self._redis.zadd(index, dict.fromkeys(entries, 0))
            count += len(chunk)
        return count


def product_view(merchant_id: str, product: Product, version: rules.RateVersion, creator_id: str) -> dict:
    """A product as search shows it, with the rate `creator_id` earns on it under `version`, whose SKU
    rates are the products' own `rate_bps` (the rate store keeps them equal; search reads the version
    without them)."""
    if creator_id in version.creators or product.rate_bps is None:
        applied = rules.rate_for(version, creator_id, product.sku, product.category)
        rate_bps, rule = applied.rate_bps, applied.rule
    else:
        rate_bps, rule = product.rate_bps, "sku"
    try:
        per_unit: int | None = rules.commission_minor(product.price_minor, 1, rate_bps)
    except money.AmountOutOfRange:
        per_unit = None  # a product stored before prices were bounded: shown, never computed past a bound
    return {
        "merchant_id": merchant_id,
        **msgspec.structs.asdict(product),
        "earn_rate_bps": rate_bps,
        "earn_rule": rule,
        "earn_per_unit_minor": per_unit,
    }
