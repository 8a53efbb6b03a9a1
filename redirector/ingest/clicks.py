"""Clicks into ClickHouse: decodes the recorder's batches (redirector/click.py), enriches each click and
builds the columns of `clicks`. The delivery itself (exactly once, crash safe, several ingesters at once)
is the generic consumer's: see core/streams.py for the guarantee.

Memory while ClickHouse is down: the backlog stays in the Redis stream, about 260 bytes per click
(msgpack, 2,000 clicks per entry: 262 measured by benchmarks/ingest.py), so 1 GB holds about 4 million
clicks; redirects are unaffected (they only append). The unique-visitor hashes add ~85 bytes per unique
visitor-hour (unique.py). Lag: `clicktrail_stream_lag_entries` / `_lag_seconds`.
"""

from __future__ import annotations

import re
import struct
import time
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from itertools import compress, repeat
from operator import attrgetter, floordiv, not_
from typing import Annotated

import msgspec

from core import queries
from core.clickhouse import Backend
from core.clickid import ID_CHARS
from core.rows import ClickRow
from core.streams import Poison, decode_payload
from redirector.click import SCHEMA_VERSION, Click
from redirector.ingest.enrich import Enricher
from redirector.ingest.memo import Memo
from redirector.ingest.unique import UniqueClicks, scatter

# One regular-expression call checks the characters of all the ids of an entry (lengths are the decoder's).
_ID_CHARS_RE = re.compile(r"[A-Za-z0-9_-]*")
# ts is a DateTime column: seconds must fit in 32 bits.
_MAX_TS_MS = 2**32 * 1000
# Distinct values remembered per low-cardinality string column (a few MB at most).
UTF8_MEMO_SIZE = 100_000


class IngestClick(Click, gc=False):
    """A `Click` as the ingester decodes it, plus the stream entry it came in. The shape checks are what the
    table needs, so that a malformed click is dead-lettered instead of failing its batch's insert for ever
    (the MAC is the attributor's business). Untracked by the cyclic garbage collector: it holds no
    containers, and a batch holds ~10^5 of them, which would otherwise trigger and slow down collections
    (they took a quarter of the ingester's time)."""

    click_id: Annotated[str, msgspec.Meta(min_length=ID_CHARS, max_length=ID_CHARS)]
    ts_ms: Annotated[int, msgspec.Meta(gt=0, lt=_MAX_TS_MS)]
    ip_hash: Annotated[int, msgspec.Meta(ge=0)]  # msgpack has no integers above 2**64 - 1
    variant: Annotated[int, msgspec.Meta(ge=-(2**15), lt=2**15)] = -1  # an Int16 column
    entry_id: bytes = b""  # not in the payload: set by decode (UTF-8, as the insert sends it)


_clicks_decoder = msgspec.msgpack.Decoder(list[IngestClick])
_set_field = msgspec.structs.force_setattr


def _column(clicks: Sequence[IngestClick], name: str) -> list:
    return list(map(attrgetter(name), clicks))


@lru_cache(maxsize=4)
def _ids_utf8(count: int) -> struct.Struct:
    """Splits `count` click ids, joined and encoded at once, into their UTF-8 bytes in one C call (ids
    are ASCII and ID_CHARS long, as decode checked): the insert writes bytes a third cheaper than str."""
    return struct.Struct(f"{ID_CHARS}s" * count)


class ClickHandler:
    """Stream `Keys.clicks` → table `clicks`."""

    name = "clicks"
    table = "clicks"
    columns = ClickRow.columns()

    def __init__(self, enricher: Enricher, unique: UniqueClicks) -> None:
        self._enricher = enricher
        self._unique = unique
        # The unique flag waits on a Redis script (as long as the rest of a batch's build): it runs in this
        # thread while the consumer builds the other columns and reads and decodes the next batch; the
        # writer waits for it before the insert (core/streams.py). One call at a time, in stream order.
        self._flagger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unique-clicks")
        self._flagging: Future | None = None
        self._flagged_from = (0, 0)  # the stream id of the first entry of the batch last flagged
        names = ("code", "creator_id", "merchant_id", "dest_host", "inapp")
        # UTF-8 bytes, which clickhouse-driver writes a third cheaper than a str it must encode.
        self._utf8 = {name: Memo(str.encode, UTF8_MEMO_SIZE) for name in names}

    def decode(self, entry_id: str, fields: dict[bytes, bytes]) -> list[IngestClick]:
        clicks = decode_payload(
            fields, SCHEMA_VERSION, b"c", _clicks_decoder, "missing_clicks", "invalid_click"
        )
        if not _ID_CHARS_RE.fullmatch("".join(map(attrgetter("click_id"), clicks))):
            raise Poison("invalid_click")
        # Sets every click's entry id in one C-level pass (consumed by a zero-length deque).
        deque(map(_set_field, clicks, repeat("entry_id"), repeat(entry_id.encode())), maxlen=0)
        return clicks

    def key(self, record: IngestClick) -> Hashable:
        return record.click_id

    def existing(self, backend: Backend, records: list[IngestClick]) -> set[Hashable]:
        return set(queries.existing_click_ids(backend, [(c.click_id, c.ts_ms) for c in records]))

    def build(self, records: list[IngestClick]) -> list[Sequence | Future]:
        """The columns of `clicks`, column by column: C-level maps over the batch (no Python frame and no
        tracked allocation per click), enrichment memoised by value. String columns hold str or, where
        the value is memoised or shared by an entry, its UTF-8 bytes: the native insert (clickhouse-driver)
        writes bytes as they are and would otherwise encode every value again."""
        enricher, utf8 = self._enricher, self._utf8
        names = ("click_id", "ts_ms", "code", "user_agent", "is_head", "ip_hash", "ip_prefix")
        click_id, ts_ms, code, user_agent, is_head, ip_hash, ip_prefix = (_column(records, n) for n in names)
        is_bot, bot_reason, device, browser, os, user_agent_utf8 = enricher.agent_columns(user_agent, is_head)
        # The previous batch's call first: a visitor's first click must be flagged before its later ones,
        # and after a failed call no later batch's call may run before the failed batch is read again.
        previous, self._flagging = self._flagging, None
        start = _stream_id(records[0].entry_id)
        if previous is not None and previous.exception() is not None and start > self._flagged_from:
            # A batch after the failed one: it gets the failed call as its flags. The writer raises that
            # failure for the failed batch before this one is handed to it (core/streams.py `_store`
            # settles first), so this batch is never written and the failure is counted once; raising it
            # here too counted it twice.
            flagging = previous
        else:
            flagging = self._flagging = self._flagger.submit(
                self._unique_column, is_bot, code, ts_ms, ip_hash, user_agent, click_id
            )
            self._flagged_from = start
        return [
            _ids_utf8(len(click_id)).unpack("".join(click_id).encode()),
            list(map(floordiv, ts_ms, repeat(1000))),
            ts_ms,
            utf8["code"].column(code),
            utf8["creator_id"].column(map(attrgetter("creator_id"), records)),
            utf8["merchant_id"].column(map(attrgetter("merchant_id"), records)),
            utf8["dest_host"].column(map(attrgetter("dest_host"), records)),
            is_head,
            is_bot,
            bot_reason,
            flagging,  # is_unique
            enricher.countries(_column(records, "country"), ip_prefix),
            device,
            browser,
            os,
            enricher.referer_hosts(_column(records, "referer")),
            user_agent_utf8,
            ip_hash,
            list(map(str.encode, ip_prefix)),  # many distinct values: encoded, not memoised
            _column(records, "entry_id"),
            _column(records, "variant"),
            utf8["inapp"].column(map(attrgetter("inapp"), records)),
        ]

    def close(self) -> None:
        """Ends the flag thread (the consumer has written its last batch, so no call is pending)."""
        self._flagger.shutdown(wait=True)

    def _unique_column(self, is_bot: Sequence[int], *columns: Sequence) -> list[int]:
        """is_unique: 0 for bots; for people, the first click of its visitor on its link in its hour."""
        now_s = int(time.time())
        if not any(is_bot):
            return self._unique.first_in_hour(*columns, now_s)
        people = list(map(not_, is_bot))
        flags = self._unique.first_in_hour(*(list(compress(c, people)) for c in columns), now_s)
        return scatter(flags, compress(range(len(is_bot)), people), len(is_bot))


def _stream_id(entry_id: bytes) -> tuple[int, int]:
    """A stream entry id (`<ms>-<seq>`) in the order Redis gives it."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)
