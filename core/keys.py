"""Every Redis key clicktrail uses, in one place. All keys share the configured prefix (`ct:` by default),
so tests and tenants can live side by side in one Redis.

On a Redis Cluster (`Keys(..., cluster=True)`) a transaction or a script must touch one hash slot, so the
layout decides which keys share a slot:

- **Control keys share one hash tag**: `self.prefix` becomes `ct:{ct:}`, so every key built from it
  (merchants, domains, API keys, rates, catalog, link indexes, the link-change stream, the attribution
  cursor, and any key added later the same way) is in one slot and every transaction among them stays
  atomic. They are low-volume: one slot holds them.
- **Hot families are spread on purpose**, built from `self.spread` (the bare prefix): link records
  (`ct:link:CODE`, the whole key hashed), the click stream sharded into `click_shards` streams each with
  its sequence hash and dead letters under one tag (`ct:{ct:clicks:N.K}`, tags chosen so that shard N
  falls in the N-th equal range of slots, i.e. on a different primary of an evenly split cluster), the
  unique-click hashes (`ct:uniq:HOUR:SHARD`, whole key hashed), the order stream with its dead letters and
  webhook idempotency records (`ct:{ct:orders}...`: the `webhook-id` record is written in the same script
  as the order-stream append) and the attributor lock (`ct:{ct:attribution}:lock`).
- A link record is never written atomically with anything else on a cluster: its change event follows it
  (core/links.py).

Single-node Redis (the default) keeps the names it always had: `spread == prefix`, one click shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

if TYPE_CHECKING:
    from core.settings import Settings

# The consumer group that moves stream entries into ClickHouse. One group per stream: every ingester
# process joins it, so each entry is delivered to one of them.
INGEST_GROUP = "ingest"
# Batch sequence numbers carry their click shard in the low digits (seq = n * stride + shard) on a
# cluster, so a spooled batch replays into the shard it was first written to: at most this many shards.
MAX_CLICK_SHARDS = 1024


def _glob_escaped(prefix: str) -> str:
    """`prefix` as a literal in a SCAN pattern: its glob characters escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "ct:"
    cluster: bool = False
    click_shards: int = 1
    # The bare prefix, for the families spread over slots (== prefix on a single node).
    spread: str = field(init=False, default="")
    _shard_tags: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        raw = self.prefix
        if not 1 <= self.click_shards <= MAX_CLICK_SHARDS:
            raise ValueError(f"click_shards must be 1..{MAX_CLICK_SHARDS}")
        if not self.cluster and self.click_shards != 1:
            raise ValueError("click shards are for a Redis Cluster")
        if self.cluster and ("{" in raw or "}" in raw):
            raise ValueError("on a Redis Cluster the prefix must not contain braces (they make hash tags)")
        object.__setattr__(self, "spread", raw)
        if self.cluster:
            object.__setattr__(self, "prefix", f"{raw}{{{raw}}}")
            tags = tuple(
                _slot_range_tag(f"{raw}clicks:{n}", n, self.click_shards) for n in range(self.click_shards)
            )
            object.__setattr__(self, "_shard_tags", tags)

    @classmethod
    def of(cls, settings: Settings) -> Keys:
        """The layout the settings ask for: prefix, cluster or not, click shards."""
        shards = settings.redis_click_shards if settings.redis_cluster else 1
        return cls(settings.redis_prefix, cluster=settings.redis_cluster, click_shards=shards)

    def _tagged(self, tag: str, rest: str = "") -> str:
        """A key of its own hash tag on a cluster; `prefix + tag + rest` as always on a single node."""
        if self.cluster:
            return f"{self.spread}{{{self.spread}{tag}}}{rest}"
        return f"{self.prefix}{tag}{rest}"

    # --- links -----------------------------------------------------------------
    def link(self, code: str) -> str:
        """The link record (msgpack), one key per code. Spread over slots on a cluster (the whole key is
        hashed); never in a transaction or script with another key."""
        return f"{self.spread}link:{code}"

    def link_pattern(self) -> str:
        """A SCAN pattern matching every link record (`link(code)`): the prefix's glob characters escaped."""
        return f"{_glob_escaped(self.spread)}link:*"

    def creator_links(self, creator_id: str) -> str:
        """Sorted set of a creator's codes, scored by creation time (ms)."""
        return f"{self.prefix}creator:{creator_id}:links"

    def host_links(self, host: str) -> str:
        """Set of codes whose destination is on `host` or a subdomain of it: lets a merchant that joins
        later claim them."""
        return f"{self.prefix}host:{host}:links"

    def link_clicks(self, code: str) -> str:
        """String counter: GET clicks a link with `max_clicks` has let through (smart links). A single key,
        incremented-and-checked alone by one script (redirector/clicklimit.py), never in a transaction
        with the link record or any other key, so a Redis Cluster may place it on any node."""
        return f"{self.spread}linkclicks:{code}"

    @property
    def link_events(self) -> str:
        """Stream of link creations and changes (fields v, l): mirrored into ClickHouse `links` by the
        ingester, tailed by every redirect worker to invalidate its cache."""
        return f"{self.prefix}links:events"

    # --- auth ------------------------------------------------------------------
    def api_key(self, key_hash: str) -> str:
        """Hash of an API key's scope, addressed by the key's SHA-256 (the key itself is never stored)."""
        return f"{self.prefix}apikey:{key_hash}"

    def api_key_pattern(self) -> str:
        """A SCAN pattern matching every API key record (`api_key(hash)`): the prefix's glob characters
        escaped."""
        return f"{_glob_escaped(self.prefix)}apikey:*"

    def api_keys_of(self, scope: str, subject_id: str) -> str:
        """Set of the key hashes issued to one creator or merchant (scope "creator" or "merchant"): what
        lets the admin list a subject's keys and revoke one. Written with the key, in one transaction."""
        return f"{self.prefix}apikeys:{scope}:{subject_id}"

    def auth_failures(self, client: str) -> str:
        """Counter of wrong admin-token attempts (bearer tokens and dashboard sign-ins that are not API
        keys) from one client address (its keyed hash, hex), with the TTL of the throttle's window
        (redirector/throttle.py). Written alone, by the throttle's scripts (one key each); spread over the
        slots, one address per key."""
        return f"{self.spread}authfail:{client}"

    def dash_session(self, session_hash: str) -> str:
        """Hash of one dashboard sign-in (kind, subject_id, csrf, credential, created_ms) with a TTL,
        addressed by the SHA-256 of the session cookie (the cookie itself is never stored). `credential`
        is the signing key's SHA-256 or the admin token's fingerprint, re-checked on every request.
        Written alone; sign-out deletes it."""
        return f"{self.prefix}dash:session:{session_hash}"

    # --- click stream and recorder --------------------------------------------
    @property
    def clicks(self) -> str:
        """Stream of click batches (several clicks per entry): the first shard's (the only one on a single
        node)."""
        return self.click_stream(0)

    @property
    def clicks_dead(self) -> str:
        """Dead-letter stream: entries the ingester could not decode, with the reason (first shard)."""
        return self.click_dead(0)

    @property
    def recorder_seq(self) -> str:
        """Hash: recorder id → last batch sequence applied; makes spool replay idempotent (first shard)."""
        return self.click_seq(0)

    def click_stream(self, shard: int) -> str:
        """Shard `shard` of the click stream. Updated atomically (one script) with `click_seq(shard)`; its
        dead letters are added in one MULTI with its acks: all three share the shard's hash tag."""
        if not self.cluster:
            return f"{self.prefix}clicks"
        return f"{self.spread}{{{self._shard_tags[shard]}}}"

    def click_seq(self, shard: int) -> str:
        """Hash recorder id → last batch sequence applied to `click_stream(shard)` (same slot)."""
        if not self.cluster:
            return f"{self.prefix}recorder:seq"
        return f"{self.spread}{{{self._shard_tags[shard]}}}:seq"

    def click_dead(self, shard: int) -> str:
        """Dead letters of `click_stream(shard)` (same slot)."""
        if not self.cluster:
            return f"{self.prefix}clicks:dead"
        return f"{self.spread}{{{self._shard_tags[shard]}}}:dead"

    @property
    def click_streams(self) -> list[str]:
        """Every shard of the click stream, in shard order."""
        return [self.click_stream(n) for n in range(self.click_shards)]

    # --- merchants and orders ---------------------------------------------------
    def merchant(self, merchant_id: str) -> str:
        return f"{self.prefix}merchant:{merchant_id}"

    @property
    def merchants(self) -> str:
        """Set of all merchant ids."""
        return f"{self.prefix}merchants"

    def domain_owner(self, host: str) -> str:
        """String: the merchant that owns a destination host."""
        return f"{self.prefix}domain:{host}"

    def domain_owners(self, domain: str) -> str:
        """List of "at_ms:merchant_id", one appended each time a registration makes a domain a merchant's
        (core/domains.py host_timeline: who owned a host when an order was received). A domain
        registered before these lists were kept has none until it moves; its first entry is then its
        owner until then, at 0."""
        return f"{self.prefix}domain:{domain}:owners"

    def domain_subdomains(self, domain: str) -> str:
        """Hash: every registered domain strictly below `domain` → its owner, so a registration finds the
        subdomains of other merchants it overlaps in one read (attribution/domains.py)."""
        return f"{self.prefix}domain:{domain}:subdomains"

    @property
    def domain_index(self) -> str:
        """String: set once `domain_subdomains` covers every registered domain (built from the merchants
        on first use, for data registered before the index existed)."""
        return f"{self.prefix}domains:indexed"

    @property
    def domain_transfers(self) -> str:
        """Stream: every domain overlap an admin accepted with `transfer_domains` (fields domain, taken,
        kind, from, to, at_ms): the durable record of ownership that moved."""
        return f"{self.prefix}domains:transfers"

    def merchant_secrets(self, merchant_id: str) -> str:
        """Hash of webhook signing secrets → expiry (ms, 0 = active)."""
        return f"{self.prefix}merchant:{merchant_id}:secrets"

    def catalog(self, merchant_id: str) -> str:
        """Hash sku → product (json)."""
        return f"{self.prefix}merchant:{merchant_id}:catalog"

    def catalog_index(self, merchant_id: str) -> str:
        """Sorted set (all scores 0, read by lexical range): the catalog's search index
        (attribution/search.py)."""
        return f"{self.prefix}merchant:{merchant_id}:catalog:index"

    def rates(self, merchant_id: str) -> str:
        """List of rate versions (JSON: the head whole, the SKU rates each changed; attribution/rates.py),
        appended on every change, never rewritten."""
        return f"{self.prefix}merchant:{merchant_id}:rates"

    def webhook_seen(self, merchant_id: str, webhook_id: str) -> str:
        """Idempotency record of one delivered webhook-id (digest of its body), kept for days. Written in
        one script with the `orders` append: same hash tag."""
        if not self.cluster:
            return f"{self.prefix}webhook:{merchant_id}:{webhook_id}"
        return self._tagged("orders", f":webhook:{merchant_id}:{webhook_id}")

    @property
    def orders(self) -> str:
        """Stream of accepted order webhook events (hash tag shared with `webhook_seen`, `orders_dead`)."""
        return self._tagged("orders")

    @property
    def orders_dead(self) -> str:
        """Dead letters of `orders`, added in one MULTI with their acks (same hash tag)."""
        return self._tagged("orders", ":dead")

    # --- attribution (attribution/attributor.py) -----------------------------------------------
    @property
    def attribution_lock(self) -> str:
        """String with a TTL: held by the one attributor run allowed at a time (alone in its operations)."""
        return self._tagged("attribution", ":lock")

    @property
    def attribution_cursor(self) -> str:
        """String: the highest order_events.ingested_ms the attributor has processed."""
        return f"{self.prefix}attribution:cursor"

    # --- discount codes and review (attribution/codes.py, attribution/review.py) -----------------
    def merchant_codes(self, merchant_id: str) -> str:
        """Hash: a merchant's discount code (upper-cased) → its spans (JSON list: creator, rate, from, to),
        appended on every change, never rewritten. Each write touches this key alone (WATCH on it)."""
        return f"{self.prefix}merchant:{merchant_id}:codes"

    def merchant_reviews(self, merchant_id: str) -> str:
        """Hash: order id → the merchant's review decision (JSON: decision, decided_ms), written once per
        order (HSETNX), alone: no other key shares its transaction."""
        return f"{self.prefix}merchant:{merchant_id}:reviews"

    @property
    def attribution_revisit(self) -> str:
        """Set of "merchant_id order_id" the next attributor run must redo (a review decision arrived);
        written after the decision, alone, and trimmed by the run of what it read."""
        return f"{self.prefix}attribution:revisit"

    # --- money: FX rates and payouts (attribution/fx.py, attribution/payouts.py) -------------------
    @property
    def fx_rates(self) -> str:
        """List of every FX version (JSON base, rates, effective_ms, set_ms), appended by `PUT /api/fx`,
        never rewritten; a version's number is its 1-based position. Written alone (one RPUSH)."""
        return f"{self.prefix}fx:rates"

    def payouts(self, merchant_id: str) -> str:
        """Hash of one merchant's payout batches (`batch:<until_ms>` → JSON plan) and payouts
        (`payout:<payout_id>` → JSON record with its status), `open`: the until of a batch planned but
        not booked yet, and `step`: the payout whose confirmation or failure is under way. A booking
        writes its payouts' records in slices of a thousand, then the batch booked with `open` cleared in
        one HSET (until then the next payout request writes them all again); a step's record and `step`
        change in one HSET. Changed only while holding `attribution_lock` (the ledger's writer lock), never
        in a transaction with any other key."""
        return f"{self.prefix}merchant:{merchant_id}:payouts"

    @property
    def attribution_stats(self) -> str:
        """Hash: the attributor's cumulative run counters and last-run times (attribution/runstats.py),
        read by every /metrics that exports them. Updated alone in its own MULTI, with no other key."""
        return f"{self.prefix}attribution:stats"

    def all_patterns(self) -> str:
        """Glob matching every key of this prefix (tests clean up with it), spread families included."""
        return f"{self.spread}*"

    # --- ingestion (appended by the ingester) ------------------------------------
    @property
    def link_events_dead(self) -> str:
        """Dead-letter stream: link events the ingester could not decode, with the reason."""
        return f"{self.prefix}links:events:dead"

    def unique_clicks(self, hour: int, shard: int) -> str:
        """Hash of (link, visitor) → the tag of the visitor's first click on the link in one clock hour
        (hours since the epoch), one of several shards by link. Expires a grace period after the hour
        (see redirector/ingest/enrich.py). Spread over slots on a cluster (the whole key hashed): the
        script that sets them touches one of them per call there."""
        return f"{self.spread}uniq:{hour}:{shard}"

    # --- events out: endpoints, the event stream, per-endpoint queues (attribution/outbox.py) -------
    # Each endpoint's keys (record, queue, dead letters, delivery state, lease) are one entity: the
    # delivery scripts touch only those. The event stream and its dedupe markers are another.
    @property
    def events(self) -> str:
        """Stream of every emitted event (fields id, type, subjects, payload), trimmed by age; fanned out
        into endpoint queues by `clicktrail deliver`. Appended atomically with `event_seen` only."""
        return f"{self.prefix}events"

    def event_seen(self, event_id: str) -> str:
        """String with a TTL: this event id was appended to `events` (emission is idempotent). Written
        atomically with `events` only."""
        return f"{self.prefix}event:{event_id}"

    @property
    def events_staged(self) -> str:
        """Hash `chunk:<first event id>` → JSON array of events: the commission events of an attributor
        chunk whose ledger rows are being inserted, kept until emitted, so that an attributor that dies
        between its insert and its emit has them announced by the next run. (Earlier releases staged one
        field per event: event id → event; those are still read.)"""
        return f"{self.prefix}events:staged"

    @property
    def events_fanout(self) -> str:
        """Hash: `cursor` (the last event-stream id copied into endpoint queues)."""
        return f"{self.prefix}events:fanout"

    @property
    def events_dead(self) -> str:
        """Stream: event-stream entries the fan-out could not read, as they came plus `dead_reason` and
        `dead_entry`; added in one script with the move of `events_fanout`'s cursor past them (so each is
        dead-lettered once)."""
        return f"{self.prefix}events:dead"

    @property
    def events_fanout_lease(self) -> str:
        """String with a TTL: the one delivery worker that fans events out now (one keeps them in order)."""
        return f"{self.prefix}events:fanout:lease"

    @property
    def endpoints(self) -> str:
        """Set of every endpoint id (the delivery worker serves them all)."""
        return f"{self.prefix}endpoints"

    def owner_endpoints(self, owner: str) -> str:
        """Set of the endpoint ids of one owner (`creator:<id>` or `merchant:<id>`)."""
        return f"{self.prefix}endpoints:{owner}"

    def endpoint(self, endpoint_id: str) -> str:
        """Hash: an endpoint's record (url, events, owner, secret) and its delivery state (fanout cursor,
        attempts, next attempt, last error). Updated atomically with the endpoint's queue and dead letters
        only."""
        return f"{self.prefix}endpoint:{endpoint_id}"

    def endpoint_queue(self, endpoint_id: str) -> str:
        """Stream: the endpoint's undelivered events in order; the head is in flight. Updated atomically
        with `endpoint` and `endpoint_dead` only."""
        return f"{self.prefix}endpoint:{endpoint_id}:queue"

    def endpoint_dead(self, endpoint_id: str) -> str:
        """Stream: events given up on after the retry period, with the last error; replay moves them back
        to the queue (atomically with `endpoint_queue` and `endpoint`)."""
        return f"{self.prefix}endpoint:{endpoint_id}:dead"

    def endpoint_lease(self, endpoint_id: str) -> str:
        """String with a TTL: the delivery worker that serves this endpoint now (one at a time keeps an
        endpoint's events in order across several `deliver` processes)."""
        return f"{self.prefix}endpoint:{endpoint_id}:lease"

    # --- webhook debugger (attribution/debugger.py) ----------------------------------------------
    def merchant_deliveries(self, merchant_id: str) -> str:
        """Stream capped at the latest few hundred: the outcome of each incoming order webhook (never a
        refused body: its hash and size only). Written alone, after the outcome is known."""
        return f"{self.prefix}merchant:{merchant_id}:deliveries"

    def merchant_unsigned_deliveries(self, merchant_id: str) -> str:
        """Stream capped like `merchant_deliveries`: webhook requests refused before their signature
        matched, which anyone can send, kept apart so that they never evict a signed delivery's record."""
        return f"{self.prefix}merchant:{merchant_id}:deliveries:unsigned"

    def merchant_deliveries_seq(self, merchant_id: str) -> str:
        """Counter: the number of the merchant's last delivery record, in either stream, so that the
        two are listed in the order Redis took them (stream ids do not order two streams' records of one
        millisecond). Incremented in the script that appends the record."""
        return f"{self.prefix}merchant:{merchant_id}:deliveries:seq"


@lru_cache(maxsize=4096)
def _slot_range_tag(base: str, shard: int, shards: int) -> str:
    """A hash tag `base.K` whose slot lies in the `shard`-th of `shards` equal ranges of slots: an evenly
    split cluster then has the shards on as many different primaries as it can."""
    low = shard * REDIS_CLUSTER_HASH_SLOTS // shards
    high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    for k in range(1_000_000):
        tag = f"{base}.{k}"
        if low <= key_slot(tag.encode()) < high:
            return tag
    raise ValueError(f"no hash tag for shard {shard} of {shards}")
