"""Merchant catalogs: `Keys.catalog(merchant_id)` is a hash sku → product (JSON). A product's own
`rate_bps` is a rate rule, so an upsert that changes it appends a rate version (see rates.py)."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from attribution import money, rules
from attribution.merchants import CURRENCY_RE
from attribution.rates import RateStore, check_bps
from clicktrail.keys import Keys

MAX_PRODUCTS_PER_PUT = 5_000
MAX_RESULTS = 200


class Product(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: str
    title: str
    url: str
    price_minor: int
    currency: str
    category: str = ""
    rate_bps: int | None = None


def check_product(product: Product) -> None:
    if not 1 <= len(product.sku) <= 128:
        raise ValueError("sku must be 1-128 chars")
    if not product.url.startswith(("https://", "http://")):
        raise ValueError(f"product {product.sku!r}: url must be http(s)")
    if not 0 <= product.price_minor <= money.MAX_UNIT_PRICE_MINOR or not CURRENCY_RE.match(product.currency):
        limit = money.MAX_UNIT_PRICE_MINOR
        raise ValueError(f"product {product.sku!r}: price_minor must be 0..{limit} and currency ISO 4217")
    if product.rate_bps is not None:
        check_bps(product.rate_bps, f"rate_bps of {product.sku!r}")


class CatalogStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._rates = RateStore(redis, keys)

    async def upsert(self, merchant_id: str, products: list[Product], now_ms: int) -> rules.RateVersion:
        for product in products:
            check_product(product)
        if products:
            await self._redis.hset(
                self._keys.catalog(merchant_id),
                mapping={p.sku: msgspec.json.encode(p) for p in products},
            )
        # Always through the rate store: an unchanged table appends nothing.
        return await self._rates.set_sku_rates(merchant_id, now_ms, {p.sku: p.rate_bps for p in products})

    async def products(self, merchant_id: str) -> list[Product]:
        raw = await self._redis.hvals(self._keys.catalog(merchant_id))
        return sorted((msgspec.json.decode(r, type=Product) for r in raw), key=lambda p: p.sku)

    async def search(self, merchant_ids: list[str], query: str, category: str, creator_id: str) -> list[dict]:
        """Products matching the filters, each with the rate `creator_id` would earn on a click now."""
        needle = query.strip().lower()
        found: list[dict] = []
        for merchant_id in merchant_ids:
            version = await self._rates.current(merchant_id)
            if version is None:
                continue
            for product in await self.products(merchant_id):
                if category and product.category != category:
                    continue
                if needle and needle not in product.title.lower() and needle not in product.sku.lower():
                    continue
                applied = rules.rate_for(version, creator_id, product.sku, product.category)
                found.append(
                    {
                        "merchant_id": merchant_id,
                        **msgspec.structs.asdict(product),
                        "earn_rate_bps": applied.rate_bps,
                        "earn_rule": applied.rule,
                        "earn_per_unit_minor": rules.commission_minor(
                            product.price_minor, 1, applied.rate_bps
                        ),
                    }
                )
                if len(found) >= MAX_RESULTS:
                    return found
        return found
