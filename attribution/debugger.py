"""The webhook debugger's record: the outcome of each incoming order webhook of a merchant, the latest
`MAX_RECORDS` kept in a capped Redis stream, shown by `GET /api/merchants/{id}/deliveries`.

A record carries the result (accepted, duplicate, refused), the reason (the same label as the metric
`clicktrail_webhooks_total{result}`), the status and error code, the webhook-id, the time, the body's
SHA-256 and size. A body is never stored, and neither is any part of one: the message of a schema
refusal names the field, with quoted values elided. Recording happens after the answer is decided and
never changes it: a failed write is logged, the merchant's request is answered as it would have been.

Anyone may POST to a merchant's webhook URL, so requests whose signature was not verified are kept in a
capped stream of their own: however many unsigned requests arrive, they never push the records of signed
deliveries (accepted, duplicate, or refused after the signature matched) out of the debugger. `latest`
merges the two, newest first.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Literal, get_args

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core import validate
from core.keys import Keys

log = logging.getLogger("clicktrail.webhooks")

MAX_RECORDS = 200
MAX_WEBHOOK_ID_CHARS = 256
MAX_MESSAGE_CHARS = 300
# Drop reasons (DeliveryLog's `dropped`): a stored record that is not one, left out of a listing; a
# record that could not be written (Redis failed after the webhook was answered).
UNREADABLE_RECORD = "unreadable_webhook_record"
RECORD_LOST = "webhook_record_lost"
Result = Literal["accepted", "duplicate", "refused"]
RESULTS: tuple[str, ...] = get_args(Result)
_QUOTED_RE = re.compile(r"'[^']*'|\"[^\"]*\"")


@dataclass
class Delivery:
    at_ms: int
    webhook_id: str
    result: str = "refused"
    reason: str = ""
    status: int = 0
    code: str = ""
    message: str = ""
    size_bytes: int | None = None  # None when the body was not read (e.g. declared too large)
    body_sha256: str = ""  # "" unless the whole body was read
    signed: bool = False  # the signature matched: kept apart from unsigned traffic, never shown

    def saw_body(self, body: bytes) -> None:
        self.size_bytes = len(body)
        self.body_sha256 = hashlib.sha256(body).hexdigest()

    def refused(self, status: int, code: str, reason: str, message: str) -> None:
        self.result, self.status, self.code, self.reason = "refused", status, code, reason
        self.message = elide_values(message)


def elide_values(message: str) -> str:
    """A refusal message without the quoted values it may echo from the body (field paths stay)."""
    return _QUOTED_RE.sub("'…'", message)[:MAX_MESSAGE_CHARS]


def shown_webhook_id(webhook_id: str) -> str:
    """The webhook-id as the debugger keeps it: one refused as `bad_webhook_id` escaped (`msg\\x85`), so
    that the merchant sees which character it was and the page shows no control character."""
    if not webhook_id or validate.is_webhook_id(webhook_id):
        return webhook_id
    return webhook_id.encode("unicode_escape").decode("ascii").replace(" ", "\\x20")


_encoder = msgspec.json.Encoder()


# The latest time a record may carry: the last millisecond of year 9999, the last a page can write as a
# date (core.links.iso_ms).
MAX_AT_MS = 253_402_300_799_999


class Shown(msgspec.Struct):
    """A record as `latest` lists it: the fields `record` writes (a Delivery without `signed`), each of
    its type (a field it does not know is dropped). A record that is not one (damaged, or written by
    hand into either stream) is left out of the listing rather than failing it: one bad entry among the
    400 kept made every listing, and the dashboard's deliveries page, a 500 until it aged out."""

    at_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_AT_MS)]
    webhook_id: str
    result: Result
    reason: str = ""
    status: int = 0
    code: str = ""
    message: str = ""
    size_bytes: int | None = None
    body_sha256: str = ""


_shown_decoder = msgspec.json.Decoder(Shown)


def shown_record(fields: dict[bytes, bytes]) -> dict | None:
    """The record of a stream entry as listed, or None when the entry holds none."""
    try:
        return msgspec.structs.asdict(_shown_decoder.decode(fields[b"d"]))
    except (KeyError, msgspec.MsgspecError):
        return None


# KEYS: the stream the record goes to, the merchant's record counter. ARGV: the records kept, the record.
_RECORD = """
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'd', ARGV[2], 'n', n)
return n
"""


def _entry_order(entry: tuple[bytes, dict]) -> tuple[int, int, int]:
    """A record's place among both streams' records: its number (`n`, 0 for records written before the
    number), then its stream id (which orders one stream's records)."""
    ms, _, seq = entry[0].partition(b"-")
    number = entry[1].get(b"n", b"0")
    return int(number) if number.isdigit() else 0, int(ms), int(seq or 0)


class DeliveryLog:
    """The records of one merchant's webhook deliveries. A record that could not be written, and each one
    left out of a listing because it is not one, is counted by `dropped(reason)`."""

    def __init__(self, redis: Redis, keys: Keys, dropped: Callable[[str], None]) -> None:
        self._redis = redis
        self._keys = keys
        self._dropped = dropped
        self._record = redis.register_script(_RECORD)

    def _streams(self, merchant_id: str) -> tuple[str, str]:
        return self._keys.merchant_deliveries(merchant_id), self._keys.merchant_unsigned_deliveries(
            merchant_id
        )

    async def record(self, merchant_id: str, delivery: Delivery) -> None:
        # Cut before escaping, so that no escape is cut in half.
        delivery.webhook_id = shown_webhook_id(delivery.webhook_id[:MAX_WEBHOOK_ID_CHARS])
        shown = asdict(delivery)
        del shown["signed"]
        signed_stream, unsigned_stream = self._streams(merchant_id)
        stream = signed_stream if delivery.signed else unsigned_stream
        keys = [stream, self._keys.merchant_deliveries_seq(merchant_id)]
        try:
            await self._record(keys=keys, args=[MAX_RECORDS, _encoder.encode(shown)])
        except RedisError as exc:
            self._dropped(RECORD_LOST)
            log.warning("cannot record a webhook delivery of %s: %s", merchant_id, exc)

    async def latest(self, merchant_id: str, limit: int, result: str | None = None) -> list[dict]:
        """Newest first; with `result`, only those (among the latest MAX_RECORDS signed and the latest
        MAX_RECORDS unsigned)."""
        entries = []
        for stream in self._streams(merchant_id):
            entries += await self._redis.xrevrange(stream, count=MAX_RECORDS)
        # By record number: the order Redis took them in, across both streams, whatever the writers'
        # clocks (both streams and the counter share one hash tag on a cluster).
        entries.sort(key=_entry_order, reverse=True)
        out = []
        for entry_id, fields in entries:
            record = shown_record(fields)
            if record is None:
                self._dropped(UNREADABLE_RECORD)
                log.warning("webhook delivery record %s of %s is unreadable: left out", entry_id, merchant_id)
                continue
            if result is None or record["result"] == result:
                out.append(record)
            if len(out) >= limit:
                break
        return out
