"""Versioned rate tables in Redis: `Keys.rates(merchant_id)` is a list of versions (JSON), one appended per
change, so the attributor can apply the rates in effect at click time.

A version holds its whole head (default, categories, creators: bounded, 1,000 entries each) and only the
SKU rates it changed (`sku_changes`, None for a cleared rate; `skus` null). The SKU table of version N is
every change up to N; reading a merchant's versions folds them into one history per SKU
(`rules.SkuRates`). Versions stored by an earlier release (`sku_changes` absent) carry their whole SKU
table in `skus`, are read as the change from the table before them, and are rewritten once as those
changes by the next change (the same versions and tables; the only rewrite a list gets). A copy of the
SKU table per version made a 50,000-product catalog changed 80 times, one product at a time, a 158 MB
key, and every trace of its orders read all of it.

A catalog upsert that changes product rates appends a version too. Appends are serialised with WATCH so
two writers cannot both make version N.
"""

from __future__ import annotations

import asyncio

import msgspec
from redis.asyncio import Redis
from redis.exceptions import WatchError

from attribution.rules import RateVersion, SkuRates
from core import validate
from core.keys import Keys

MAX_RATE_BPS = 10_000
# Entries of one rates PUT: every version repeats these maps whole, and the attributor reads every version.
MAX_CATEGORY_RATES = 1_000
# About how many bytes of versions one RPUSH carries when an earlier release's list is rewritten.
REWRITE_BYTES_PER_COMMAND = 1 << 20
MAX_CREATOR_RATES = 1_000


class StoredVersion(msgspec.Struct, frozen=True):
    version: int
    effective_ms: int
    default_bps: int
    categories: dict[str, int] = {}
    # A version stored whole (before sku_changes): its complete SKU table. null in a version stored as
    # changes, so that an earlier release, which would read a missing table as "no SKU rates" and write
    # that back whole, refuses the version instead (docs/operations.md: stop it before the upgrade).
    skus: dict[str, int] | None = None
    creators: dict[str, int] = {}
    sku_changes: dict[str, int | None] | None = None  # the SKU rates this version set or cleared (None)

    def changes_from(self, table: dict[str, int]) -> dict[str, int | None]:
        """The SKU rates this version set (int) or cleared (None) on `table`, the one before it. A version
        with neither a table nor changes (no writer makes one) changes nothing: read as an empty table,
        it would clear every SKU rate."""
        if self.sku_changes is not None:
            return self.sku_changes
        return {} if self.skus is None else _difference(table, self.skus)


def _difference(before: dict[str, int], after: dict[str, int]) -> dict[str, int | None]:
    """The SKU rates that turn `before` into `after`: each set (int) or cleared (None)."""
    changes: dict[str, int | None] = {sku: None for sku in before if sku not in after}
    changes.update((sku, rate) for sku, rate in after.items() if before.get(sku) != rate)
    return changes


def _apply(table: dict[str, int], changes: dict[str, int | None]) -> None:
    for sku, rate in changes.items():
        if rate is None:
            table.pop(sku, None)
        else:
            table[sku] = rate


class _Head(msgspec.Struct, frozen=True):
    """A stored version without its SKU table (catalog search takes SKU rates from the products)."""

    version: int
    effective_ms: int
    default_bps: int
    categories: dict[str, int] = {}
    creators: dict[str, int] = {}


class RatesUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of PUT /api/merchants/{id}/rates: replaces default, categories and creators (SKU rates come
    from the catalog and are kept)."""

    default_rate_bps: int
    categories: dict[str, int] = {}
    creators: dict[str, int] = {}


def check_bps(value: int, what: str) -> None:
    if not 0 <= value <= MAX_RATE_BPS:
        raise ValueError(f"{what} must be 0-{MAX_RATE_BPS} basis points")


def check_update(update: RatesUpdate) -> None:
    """Every rate in range, every map bounded, every name one a product or creator can have."""
    check_bps(update.default_rate_bps, "default_rate_bps")
    if len(update.categories) > MAX_CATEGORY_RATES:
        raise ValueError(f"at most {MAX_CATEGORY_RATES} category rates")
    if len(update.creators) > MAX_CREATOR_RATES:
        raise ValueError(f"at most {MAX_CREATOR_RATES} creator rates")
    for name, value in update.categories.items():
        if not 1 <= len(name) <= validate.MAX_CATEGORY_CHARS or validate.has_control_chars(name):
            raise ValueError(
                f"category {name[:40]!r} must be 1-{validate.MAX_CATEGORY_CHARS} chars, no control chars"
            )
        check_bps(value, f"rate for category {name!r}")
    for name, value in update.creators.items():
        if not validate.is_id(name):
            raise ValueError(f"creator {name[:40]!r} is not a creator id (1-64 chars of A-Z a-z 0-9 _ -)")
        check_bps(value, f"rate for creator {name!r}")


def initial_version(previous_raw: bytes | None, now_ms: int, update: RatesUpdate) -> bytes:
    """The stored version a merchant's registration appends (merchants.MerchantStore.register writes it in
    the registration's own transaction): `update` as the next version after `previous_raw` (None: the
    first), SKU rates kept (it changes none)."""
    check_update(update)
    previous = None if previous_raw is None else msgspec.json.decode(previous_raw, type=_Head)
    version = StoredVersion(
        (previous.version + 1) if previous else 1,
        max(now_ms, previous.effective_ms) if previous else now_ms,
        update.default_rate_bps,
        dict(update.categories),
        creators=dict(update.creators),
        sku_changes={},
    )
    return msgspec.json.encode(version)


def decode_versions(raw: list[bytes]) -> list[RateVersion]:
    """Every stored version (oldest first) as rules' versions, their SKU rates one shared set of histories."""
    changed: dict[str, tuple[list[int], list[int | None]]] = {}
    table: dict[str, int] = {}
    heads = []
    for one in raw:
        stored = msgspec.json.decode(one, type=StoredVersion)
        changes = stored.changes_from(table)
        _apply(table, changes)
        for sku, rate in changes.items():
            versions, rates = changed.get(sku) or changed.setdefault(sku, ([], []))
            versions.append(stored.version)
            rates.append(rate)
        # Only the head is kept: a version stored whole is freed once its changes are taken.
        heads.append(
            (stored.version, stored.effective_ms, stored.default_bps, stored.categories, stored.creators)
        )
    histories = {sku: (tuple(versions), tuple(rates)) for sku, (versions, rates) in changed.items()}
    return [
        RateVersion(
            version, effective_ms, default_bps, dict(categories), SkuRates(histories, version), dict(creators)
        )
        for version, effective_ms, default_bps, categories, creators in heads
    ]


class RateStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def versions(self, merchant_id: str) -> list[RateVersion]:
        return decode_versions(await self.raw_versions(merchant_id))

    async def raw_versions(self, merchant_id: str) -> list[bytes]:
        """The stored versions as stored, oldest first, for `decode_versions` off the event loop (a big
        catalog's versions take milliseconds each to decode)."""
        return await self._redis.lrange(self._keys.rates(merchant_id), 0, -1)

    async def current_head(self, merchant_id: str) -> RateVersion | None:
        """The current version without its SKU rates (skus is empty): cheap to read however big the
        catalog."""
        raw = await self._redis.lindex(self._keys.rates(merchant_id), -1)
        if raw is None:
            return None
        head = msgspec.json.decode(raw, type=_Head)
        return RateVersion(
            head.version, head.effective_ms, head.default_bps, dict(head.categories), {}, dict(head.creators)
        )

    async def append(self, merchant_id: str, now_ms: int, change) -> RateVersion:
        """Append `change(previous or None) -> (default, categories, skus, creators)` as the next version,
        effective now; `previous.skus` is the current SKU table whole, and only the SKU rates `change` sets
        or clears are stored. A version equal to the current one is not appended (an idempotent PUT)."""
        key = self._keys.rates(merchant_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raws = await pipe.lrange(key, 0, -1)
                    # In a thread: the SKU table is every version's changes, a big catalog's a C call each.
                    previous, rewritten = await asyncio.to_thread(_current, raws) if raws else (None, None)
                    default, categories, skus, creators = change(previous)
                    if previous is not None and (default, categories, skus, creators) == (
                        previous.default_bps,
                        previous.categories,
                        previous.skus,
                        previous.creators,
                    ):
                        await pipe.unwatch()
                        return _rule(previous, skus)
                    # Effective times never go backwards, so version order and time order agree.
                    effective = max(now_ms, previous.effective_ms) if previous else now_ms
                    version = StoredVersion(
                        (previous.version + 1) if previous else 1,
                        effective,
                        default,
                        categories,
                        creators=creators,
                        sku_changes=_difference(previous.skus if previous else {}, skus),
                    )
                    pipe.multi()
                    if rewritten is not None:
                        # Versions stored whole by an earlier release, rewritten once as their changes
                        # (the same tables): every later write would read and fold them again.
                        pipe.delete(key)
                        for batch in _batches(rewritten, REWRITE_BYTES_PER_COMMAND):
                            pipe.rpush(key, *batch)
                    pipe.rpush(key, msgspec.json.encode(version))
                    await pipe.execute()
                    return _rule(version, skus)
                except WatchError:
                    continue

    async def set_rates(self, merchant_id: str, now_ms: int, update: RatesUpdate) -> RateVersion:
        check_update(update)
        return await self.append(
            merchant_id,
            now_ms,
            lambda prev: (
                update.default_rate_bps,
                dict(update.categories),
                dict(prev.skus) if prev else {},
                dict(update.creators),
            ),
        )

    async def set_sku_rates(
        self, merchant_id: str, now_ms: int, sku_rates: dict[str, int | None]
    ) -> RateVersion:
        """Set (int) or clear (None) the product rates of the given SKUs."""

        def change(prev: StoredVersion | None):
            assert prev is not None, "a merchant gets version 1 when it is created"
            skus = dict(prev.skus)
            for sku, rate in sku_rates.items():
                if rate is None:
                    skus.pop(sku, None)
                else:
                    skus[sku] = rate
            return prev.default_bps, dict(prev.categories), skus, dict(prev.creators)

        return await self.append(merchant_id, now_ms, change)


def _current(raws: list[bytes]) -> tuple[StoredVersion, list[bytes] | None]:
    """The last stored version with its whole SKU table in `skus`, and the versions as changes if any was
    stored whole (else None). Decoded one version at a time: one stored whole is freed once its changes
    are taken."""
    table: dict[str, int] = {}
    rewritten: list[bytes] = []
    whole = False
    for raw in raws:
        last = msgspec.json.decode(raw, type=StoredVersion)
        changes = last.changes_from(table)
        _apply(table, changes)
        if last.sku_changes is None:
            whole = True
            raw = msgspec.json.encode(msgspec.structs.replace(last, skus=None, sku_changes=changes))
        rewritten.append(raw)
    return msgspec.structs.replace(last, skus=table, sku_changes=None), rewritten if whole else None


def _batches(raws: list[bytes], max_bytes: int) -> list[list[bytes]]:
    """`raws` in order, in runs of about `max_bytes` (a run holds at least one)."""
    batches: list[list[bytes]] = []
    size = max_bytes
    for raw in raws:
        if size + len(raw) > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(raw)
        size += len(raw)
    return batches


def _rule(version: StoredVersion, skus: dict[str, int]) -> RateVersion:
    return RateVersion(
        version.version,
        version.effective_ms,
        version.default_bps,
        dict(version.categories),
        dict(skus),
        dict(version.creators),
    )
