"""The compact tier of the link cache: one `bytes` per code (msgpack, no Python object per field), in
generations sized by bytes, so that a worker holds millions of links.

A record is a msgpack array in `Packed`'s field order with its trailing defaults left out: a plain link
costs its URL, its creator and a few bytes more. Its host is kept as a slice of its URL where it is one
(the usual case). The code is the key, not part of the record; a "no such code" is a record of its expiry
alone.

Why generations rather than an LRU list: an ordered dict costs about 50 bytes a link more (a node and a
second table), a fifth of the budget. Here every record lives in one of a few dicts, youngest first: new
records and records used again go into the youngest, and once a generation's worth of bytes
(GENERATIONS-th of the budget) has gone into it a new youngest is begun. Whenever the total is over the
budget, records of the oldest generation are dropped one by one until it fits: the cache is always full
to its budget less one record, and what goes is among what was used least recently (an LRU to within a
generation). Records drop a few at a time as others come, so no eviction ever frees a whole generation at
once and stalls the event loop."""

from __future__ import annotations

import msgspec

from core.links import OPEN_IN_DEFAULT, Link, Smart
from core.validate import DEFAULT_CLICK_PARAM

# What one record costs beyond the bytes of its code and its record, measured on CPython 3.11 (64-bit):
# the code's str header (49) and the record's bytes header (33), their rounding to 16 bytes, and the
# dictionary's share (about 42 bytes a key at its usual load).
ENTRY_OVERHEAD_BYTES = 140
# The youngest generation takes this share of the budget (counted in bytes put into it, moves included)
# before a new one is begun: how finely "least recently used" is told apart.
GENERATIONS = 8
# Sparse old generations (their records mostly used again) are merged beyond this many, so that a miss,
# which looks in each, stays cheap.
MAX_GENERATIONS = 12


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
    """Records by code in generations within `max_bytes` (see the module's docstring). `epoch` changes
    whenever a new youngest generation is begun: a caller that saw a record young at one epoch need not
    move it again (get) until the next."""

    __slots__ = ("_bytes", "_gen_bytes", "_gens", "_max_bytes", "_young_put", "epoch")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._gen_bytes = max_bytes // GENERATIONS
        self._gens: list[dict[str, bytes]] = [{}]  # youngest first
        self._bytes = 0
        self._young_put = 0  # bytes put into the youngest since it was begun (not what it still holds)
        self.epoch = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, code: str) -> bytes | None:
        gens = self._gens
        record = gens[0].get(code)
        if record is not None:
            return record
        for age in range(1, len(gens)):
            record = gens[age].pop(code, None)
            if record is not None:  # used again: moved to the youngest, so it outlives its old peers
                size = len(code) + len(record) + ENTRY_OVERHEAD_BYTES  # cost(), inlined: the hot path
                if self._young_put + size > self._gen_bytes:
                    self._begin_generation()
                self._gens[0][code] = record
                self._young_put += size
                return record
        return None

    def put(self, code: str, record: bytes) -> None:
        self.drop(code)
        size = cost(code, record)
        if size > self._gen_bytes:
            return  # only with a budget of a few records: such a record is read from Redis each time
        self._into_youngest(code, record, size)
        self._bytes += size
        gens = self._gens
        while self._bytes > self._max_bytes and len(gens) > 1:
            oldest = gens[-1]
            if not oldest:
                gens.pop()
                continue
            old_code, old_record = oldest.popitem()  # within a generation the order matters not
            self._bytes -= cost(old_code, old_record)

    def _into_youngest(self, code: str, record: bytes, size: int) -> None:
        if self._young_put + size > self._gen_bytes:
            self._begin_generation()
        self._gens[0][code] = record
        self._young_put += size

    def _begin_generation(self) -> None:
        gens = [gen for gen in self._gens if gen]
        if len(gens) >= MAX_GENERATIONS:
            # Two adjacent generations become one, their order lost: the pair that holds the fewest
            # records, never the youngest or the oldest (what is dropped next is told apart most finely).
            # The smaller is copied into the larger: a short copy, and only once a generation.
            at = min(range(1, len(gens) - 2), key=lambda i: len(gens[i]) + len(gens[i + 1]))
            younger, older = gens.pop(at), gens[at]
            if len(younger) > len(older):
                younger, older = older, younger
                gens[at] = older
            older.update(younger)
        gens.insert(0, {})
        self._gens = gens
        self._young_put = 0
        self.epoch += 1

    def drop(self, code: str) -> None:
        for gen in self._gens:
            record = gen.pop(code, None)
            if record is not None:
                self._bytes -= cost(code, record)
                return

    def clear(self) -> None:
        self._gens = [{}]
        self._bytes = 0
        self._young_put = 0
        self.epoch += 1

    def __len__(self) -> int:
        return sum(map(len, self._gens))

    def __contains__(self, code: str) -> bool:
        """Whether a record is held, without using it (unlike get)."""
        return any(code in gen for gen in self._gens)
