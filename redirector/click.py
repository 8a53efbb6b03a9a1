"""What one click records, and how clicks travel through the Redis stream and the spool.

A stream entry (and a spool record) carries a *batch* of clicks, so that many concurrent redirects share
one Redis write. Entry fields:

    v  schema version (b"1")
    r  recorder id (one per redirect worker process)
    s  the recorder's batch sequence number (replay idempotency, see recorder.py)
    c  msgpack array of clicks, each an array in the field order of `Click`

Nothing here is parsed or enriched: that happens at ingestion, off the hot path. The full IP is never part
of a click: only its keyed hash and its /24 or /48 prefix.
"""

from __future__ import annotations

import msgspec

SCHEMA_VERSION = b"1"


class Click(msgspec.Struct, array_like=True, frozen=True, gc=False):
    # gc=False: only strings, numbers and bools inside, so the collector never needs to look at a click.
    click_id: str
    ts_ms: int
    code: str
    creator_id: str
    merchant_id: str  # "" while no merchant owns the destination host
    dest_host: str
    is_head: bool
    user_agent: str
    referer: str
    ip_hash: int  # keyed 64-bit hash of the client IP
    ip_prefix: str  # "203.0.113.0/24" or "2001:db8:1::/48"
    country: str  # ISO 3166 alpha-2 from the trusted header, "" when unknown
    # Last, with a default: batches spooled before smart links decode unchanged.
    variant: int = -1  # the smart-link variant chosen (index into `variants`), -1 when none
    # The in-app browser that opened an `open_in: "browser"` link (redirector/inapp.py), else "". Last and
    # defaulted: batches written before it existed (stream, spool) still decode.
    inapp: str = ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Click])


def encode_batch(clicks: list[Click]) -> bytes:
    return _encoder.encode(clicks)


def decode_batch(payload: bytes) -> list[Click]:
    """Raises msgspec.DecodeError / ValidationError on a malformed payload (the ingester dead-letters it)."""
    return _decoder.decode(payload)
