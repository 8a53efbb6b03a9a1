"""The compact tier of the link cache: one `bytes` per code (msgpack, no Python object per field), in
generations sized by bytes, so that a worker holds millions of links.

A record is a msgpack array in `Packed`'s field order with its trailing defaults left out: a plain link
costs its URL, its creator and a few bytes more. Its host is kept as a slice of its URL where it is one
(the usual case). The code is the key, not part of the record; a "no such code" is a record of its expiry
alone.

Why generations rather than an LRU list: an ordered dict costs about 50 bytes a link more (a node and a
second table), a fifth of the budget. Here every record lives in one of GENERATIONS dicts of an equal
share of the budget: new records go into the youngest; a hit in an older one moves the record to the
youngest; when the youngest is full, the oldest (what was not used for the longest) is dropped and a new
youngest begun. An approximate LRU at no cost per record. A dropped generation is freed a few records per
insertion rather than at once, so that freeing a hundred thousand objects never stalls the event loop."""

from __future__ import annotations

import msgspec

from core.links import OPEN_IN_DEFAULT, Link, Smart
from core.validate import DEFAULT_CLICK_PARAM

# What one record costs beyond the bytes of its code and its record, measured on CPython 3.11 (64-bit):
# the code's str header (49) and the record's bytes header (33), their rounding to 16 bytes, and the
# dictionary's share (about 42 bytes a key at its usual load).
ENTRY_OVERHEAD_BYTES = 140
# Generations of records: the oldest is dropped when the youngest is full, so the cache always holds at
# least (GENERATIONS - 1) / GENERATIONS of its budget's worth; a miss looks in each.
GENERATIONS = 8
# Records of a dropped generation freed per insertion: more than one, so it is empty before the next drop.
FREE_PER_PUT = 8


class Packed(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One cached record, field order = wire order (rare fields last, so they are usually left out)."""

    expires_ms: int
    url: str = ""  # "": the code has no link (a cached "no such code")
    creator_id: str = ""
    created_at_ms: int = 0
    host_at: int = 0  # the host is url[host_at:host_end] when host_end > 0, else `host`
    host_end: int = 0
    host: str = ""
    merchant_id: str | None = None
    click_param: str = DEFAULT_CLICK_PARAM
    disabled: bool = False
    updated_at_ms: int = 0
    open_in: str = OPEN_IN_DEFAULT
    smart: Smart | None = None  # smart links are rare: kept as msgspec encodes them (a map)


_DEFAULTS = tuple(f.default for f in msgspec.structs.fields(Packed))
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Packed)


def pack(link: Link | None, expires_ms: int) -> bytes:
    if link is None:
        return _encoder.encode((expires_ms,))
    url, host = link.url, link.host
    host_at = url.find(host) if host else -1
    host_end = host_at + len(host) if host_at >= 0 else 0
    fields = [expires_ms, url, link.creator_id, link.created_at_ms, max(host_at, 0), host_end,
              "" if host_end else host, link.merchant_id, link.click_param, link.disabled,
              link.updated_at_ms, link.open_in, link.smart]  # fmt: skip
    while fields[-1] == _DEFAULTS[len(fields) - 1] and len(fields) > 2:
        fields.pop()
    return _encoder.encode(fields)


def unpack(code: str, record: bytes) -> tuple[int, Link | None]:
    """(expiry in ms, the link or None) of a record packed for `code`."""
    p = _decoder.decode(record)
    if not p.url:
        return p.expires_ms, None
    url = p.url
    host = url[p.host_at : p.host_end] if p.host_end else p.host
    link = Link(code, url, p.creator_id, host, p.created_at_ms, p.merchant_id, p.click_param, p.disabled,
                p.updated_at_ms, p.smart, p.open_in)  # fmt: skip
    return p.expires_ms, link


def cost(code: str, record: bytes) -> int:
    """What a record is counted as against the budget (its share of the worker's memory, about)."""
    return len(code) + len(record) + ENTRY_OVERHEAD_BYTES


class PackedLinks:
    """Records by code in GENERATIONS generations within `max_bytes` (see the module's docstring)."""

    __slots__ = ("_dropped", "_gen_bytes", "_gens", "_max_bytes", "_sizes")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._gen_bytes = max_bytes // GENERATIONS
        self._gens: list[dict[str, bytes]] = [{} for _ in range(GENERATIONS)]  # youngest first
        self._sizes = [0] * GENERATIONS
        self._dropped: dict[str, bytes] = {}  # evicted, freed FREE_PER_PUT at a time

    @property
    def bytes(self) -> int:
        return sum(self._sizes)

    def get(self, code: str) -> bytes | None:
        gens = self._gens
        record = gens[0].get(code)
        if record is not None:
            return record
        for age in range(1, GENERATIONS):
            record = gens[age].pop(code, None)
            if record is not None:  # used again: moved to the youngest, so it outlives its old peers
                gens[0][code] = record
                size = cost(code, record)
                self._sizes[age] -= size
                self._sizes[0] += size
                return record
        return None

    def put(self, code: str, record: bytes) -> None:
        self.drop(code)
        size = cost(code, record)
        if size > self._gen_bytes:
            return  # only with a budget of a few records: such a record is read from Redis each time
        if self._sizes[0] + size > self._gen_bytes:
            self._rotate()
        self._gens[0][code] = record
        self._sizes[0] += size
        dropped = self._dropped
        for _ in range(min(FREE_PER_PUT, len(dropped))):
            dropped.popitem()  # from the end: O(1), and the order no longer matters

    def _rotate(self) -> None:
        # A generation still being freed (refilled faster than FREE_PER_PUT frees) is freed at once here.
        self._dropped = self._gens.pop()
        self._sizes.pop()
        self._gens.insert(0, {})
        self._sizes.insert(0, 0)

    def drop(self, code: str) -> None:
        for age, gen in enumerate(self._gens):
            record = gen.pop(code, None)
            if record is not None:
                self._sizes[age] -= cost(code, record)
                return

    def clear(self) -> None:
        self._gens = [{} for _ in range(GENERATIONS)]
        self._sizes = [0] * GENERATIONS
        self._dropped = {}

    def __len__(self) -> int:
        return sum(map(len, self._gens))
