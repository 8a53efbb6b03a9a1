"""The click ingester: decodes the recorder's batches (redirector/click.py), enriches each click and builds
the columns of `clicks`; and the link-event mirror into `links`. The delivery itself (exactly once, crash
safe, several ingesters at once) is the generic consumer's: see clicktrail/streams.py for the guarantee.

Memory while ClickHouse is down: the backlog stays in the Redis stream, about 250-300 bytes per click
(msgpack, ~2,000 clicks per entry; measured by benchmarks/ingest.py), plus the unique-visitor hashes.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

import msgspec
import redis

from clicktrail import clickid, queries
from clicktrail.clickhouse import Backend
from clicktrail.keys import Keys
from clicktrail.settings import Settings
from clicktrail.streams import Poison, StreamSpec
from redirector.click import SCHEMA_VERSION, Click, decode_batch
from redirector.enrich import Enricher, UniqueClicks, Visit

LINK_EVENT_VERSION = b"1"


class ClickRecord(msgspec.Struct, frozen=True):
    click: Click
    entry_id: str


class ClickHandler:
    """Stream `Keys.clicks` → table `clicks`."""

    name = "clicks"
    table = "clicks"
    columns = queries.CLICK_COLUMNS

    def __init__(self, enricher: Enricher, unique: UniqueClicks) -> None:
        self._enricher = enricher
        self._unique = unique

    def decode(self, entry_id: str, fields: dict[bytes, bytes]) -> list[ClickRecord]:
        if fields.get(b"v") != SCHEMA_VERSION:
            raise Poison("schema_version")
        payload = fields.get(b"c")
        if payload is None:
            raise Poison("missing_clicks")
        try:
            clicks = decode_batch(payload)
        except msgspec.ValidationError:
            raise Poison("invalid_click") from None
        except msgspec.DecodeError:
            raise Poison("undecodable") from None
        for click in clicks:
            # The id carries the time the existence check is bounded by; a malformed one cannot be found.
            if clickid.decode(click.click_id) is None or click.ts_ms <= 0:
                raise Poison("invalid_click")
        return [ClickRecord(click, entry_id) for click in clicks]

    def key(self, record: ClickRecord) -> Hashable:
        return record.click.click_id

    def existing(self, backend: Backend, records: list[ClickRecord]) -> set[Hashable]:
        return set(queries.existing_click_ids(backend, [(r.click.click_id, r.click.ts_ms) for r in records]))

    def build(self, records: list[ClickRecord]) -> list[list]:
        enricher = self._enricher
        clicks = [r.click for r in records]
        traits = [enricher.traits(c.user_agent, c.is_head) for c in clicks]
        humans = [i for i, t in enumerate(traits) if not t.is_bot]
        unique = [False] * len(clicks)
        people = [clicks[i] for i in humans]
        visits = [Visit(c.code, c.ts_ms, c.ip_hash, c.user_agent, c.click_id) for c in people]
        for i, flag in zip(humans, self._unique.first_in_hour(visits, int(time.time())), strict=True):
            unique[i] = flag
        return [
            [c.click_id for c in clicks],
            [c.ts_ms // 1000 for c in clicks],
            [c.ts_ms for c in clicks],
            [c.code for c in clicks],
            [c.creator_id for c in clicks],
            [c.merchant_id for c in clicks],
            [c.dest_host for c in clicks],
            [int(c.is_head) for c in clicks],
            [int(t.is_bot) for t in traits],
            [t.bot_reason for t in traits],
            [int(u) for u in unique],
            [enricher.country(c.country, c.ip_prefix) for c in clicks],
            [t.device for t in traits],
            [t.browser for t in traits],
            [t.os for t in traits],
            [enricher.referer_host(c.referer) for c in clicks],
            [c.user_agent for c in clicks],
            [c.ip_hash for c in clicks],
            [c.ip_prefix for c in clicks],
            [r.entry_id for r in records],
        ]


class LinkEvent(msgspec.Struct, frozen=True):
    code: str
    url: str
    creator_id: str
    merchant_id: str
    host: str
    created_at_ms: int
    disabled: bool
    updated_at_ms: int


class LinkEventHandler:
    """Stream `Keys.link_events` → table `links` (one row per link version)."""

    name = "links"
    table = "links"
    columns = queries.LINK_COLUMNS

    def __init__(self) -> None:
        self._decoder = msgspec.msgpack.Decoder(LinkEvent)

    def decode(self, entry_id: str, fields: dict[bytes, bytes]) -> list[LinkEvent]:
        if fields.get(b"v") != LINK_EVENT_VERSION:
            raise Poison("schema_version")
        payload = fields.get(b"l")
        if payload is None:
            raise Poison("missing_link")
        try:
            return [self._decoder.decode(payload)]
        except msgspec.ValidationError:
            raise Poison("invalid_link") from None
        except msgspec.DecodeError:
            raise Poison("undecodable") from None

    def key(self, record: LinkEvent) -> Hashable:
        return (record.code, record.updated_at_ms)

    def existing(self, backend: Backend, records: list[LinkEvent]) -> set[Hashable]:
        return set(queries.existing_link_versions(backend, [(r.code, r.updated_at_ms) for r in records]))

    def build(self, records: list[LinkEvent]) -> list[list]:
        return [
            [r.code for r in records],
            [r.url for r in records],
            [r.creator_id for r in records],
            [r.merchant_id for r in records],
            [r.host for r in records],
            [r.created_at_ms // 1000 for r in records],
            [r.created_at_ms for r in records],
            [int(r.disabled) for r in records],
            [r.updated_at_ms for r in records],
        ]


def stream_specs(settings: Settings) -> list[StreamSpec]:
    """The redirector's streams: clicks and link events. (The order-events stream is attribution's.)"""
    keys = Keys(settings.redis_prefix)

    def clicks(client: redis.Redis) -> ClickHandler:
        return ClickHandler(Enricher(), UniqueClicks(client, keys))

    return [
        StreamSpec("clicks", keys.clicks, keys.clicks_dead, clicks),
        StreamSpec("links", keys.link_events, keys.link_events_dead, lambda _client: LinkEventHandler()),
    ]
