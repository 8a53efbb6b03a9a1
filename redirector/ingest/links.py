"""Link events into ClickHouse: every version of every link, mirrored from the link-change stream into
`links` (the redirect workers tail the same stream to drop changed links from their caches)."""

from __future__ import annotations

from collections.abc import Hashable

import msgspec

from core import queries
from core.clickhouse import Backend
from core.links import LINK_EVENT_VERSION, LinkEvent
from core.rows import LinkRow
from core.streams import decode_payload

# Redirect workers tail the link events too (redirector/linkwatch.py); a worker that finds an entry
# trimmed before it read it drops its whole cache, so stored events stay this long (they are few).
LINK_EVENTS_RETAIN_MS = 15 * 60 * 1000


class LinkEventHandler:
    """Stream `Keys.link_events` → table `links` (one row per link version)."""

    name = "links"
    table = "links"
    columns = LinkRow.columns()

    def __init__(self) -> None:
        self._decoder = msgspec.msgpack.Decoder(LinkEvent)

    def decode(self, entry_id: str, fields: dict[bytes, bytes]) -> list[LinkEvent]:
        return [
            decode_payload(fields, LINK_EVENT_VERSION, b"l", self._decoder, "missing_link", "invalid_link")
        ]

    def key(self, record: LinkEvent) -> Hashable:
        return (record.code, record.updated_at_ms)

    def existing(self, backend: Backend, records: list[LinkEvent]) -> set[Hashable]:
        return set(queries.existing_link_versions(backend, [(r.code, r.updated_at_ms) for r in records]))

    def close(self) -> None:
        """Nothing of its own to end."""

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
            [r.smart for r in records],
        ]
