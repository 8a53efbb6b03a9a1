"""Every Redis key clicktrail uses, in one place. All keys share the configured prefix (`ct:` by default),
so tests and tenants can live side by side in one Redis."""

from __future__ import annotations

from dataclasses import dataclass

# The consumer group that moves stream entries into ClickHouse. One group per stream: every ingester
# process joins it, so each entry is delivered to one of them.
INGEST_GROUP = "ingest"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "ct:"

    # --- links -----------------------------------------------------------------
    def link(self, code: str) -> str:
        """The link record (msgpack), one key per code."""
        return f"{self.prefix}link:{code}"

    def creator_links(self, creator_id: str) -> str:
        """Sorted set of a creator's codes, scored by creation time (ms)."""
        return f"{self.prefix}creator:{creator_id}:links"

    def host_links(self, host: str) -> str:
        """Set of codes whose destination is on `host` or a subdomain of it: lets a merchant that joins
        later claim them."""
        return f"{self.prefix}host:{host}:links"

    @property
    def link_events(self) -> str:
        """Stream of link creations and changes (fields v, l): mirrored into ClickHouse `links` by the
        ingester, tailed by every redirect worker to invalidate its cache."""
        return f"{self.prefix}links:events"

    # --- auth ------------------------------------------------------------------
    def api_key(self, key_hash: str) -> str:
        """Hash of an API key's scope, addressed by the key's SHA-256 (the key itself is never stored)."""
        return f"{self.prefix}apikey:{key_hash}"

    # --- click stream and recorder --------------------------------------------
    @property
    def clicks(self) -> str:
        """Stream of click batches (several clicks per entry)."""
        return f"{self.prefix}clicks"

    @property
    def clicks_dead(self) -> str:
        """Dead-letter stream: entries the ingester could not decode, with the reason."""
        return f"{self.prefix}clicks:dead"

    @property
    def recorder_seq(self) -> str:
        """Hash: recorder id → last batch sequence applied; makes spool replay idempotent."""
        return f"{self.prefix}recorder:seq"

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
        """List of complete rate versions (JSON), appended on every change, never rewritten."""
        return f"{self.prefix}merchant:{merchant_id}:rates"

    def webhook_seen(self, merchant_id: str, webhook_id: str) -> str:
        """Idempotency record of one delivered webhook-id (digest of its body), kept for days."""
        return f"{self.prefix}webhook:{merchant_id}:{webhook_id}"

    @property
    def orders(self) -> str:
        """Stream of accepted order webhook events."""
        return f"{self.prefix}orders"

    @property
    def orders_dead(self) -> str:
        return f"{self.prefix}orders:dead"

    # --- attribution (attribution/attributor.py) -----------------------------------------------
    @property
    def attribution_lock(self) -> str:
        """String with a TTL: held by the one attributor run allowed at a time."""
        return f"{self.prefix}attribution:lock"

    @property
    def attribution_cursor(self) -> str:
        """String: the highest order_events.ingested_ms the attributor has processed."""
        return f"{self.prefix}attribution:cursor"

    @property
    def attribution_stats(self) -> str:
        """Hash: the attributor's cumulative run counters and last-run times (attribution/runstats.py),
        read by every /metrics that exports them. Updated alone in its own MULTI, with no other key."""
        return f"{self.prefix}attribution:stats"

    def all_patterns(self) -> str:
        """Glob matching every key of this prefix (tests clean up with it)."""
        return f"{self.prefix}*"

    # --- ingestion (appended by the ingester) ------------------------------------
    @property
    def link_events_dead(self) -> str:
        """Dead-letter stream: link events the ingester could not decode, with the reason."""
        return f"{self.prefix}links:events:dead"

    def unique_clicks(self, hour: int, shard: int) -> str:
        """Hash of (link, visitor) → the tag of the visitor's first click on the link in one clock hour
        (hours since the epoch), one of several shards by link. Expires a grace period after the hour
        (see redirector/ingest/enrich.py)."""
        return f"{self.prefix}uniq:{hour}:{shard}"
