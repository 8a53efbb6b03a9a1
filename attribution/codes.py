"""Discount codes: which creator a merchant's code credits, and since when.

A code is kept as a history of *spans* (creator, rate, from, to), never rewritten: `PUT` closes the open
span (if it differs) and opens a new one, `DELETE` closes it. The attributor matches an order's codes
against the span active at the order's `occurred_at` (its first receipt, if earlier: ledger.Folded.terms_ms),
so a code reassigned later credits each order by its own time, and a rerun reads the same history
(deterministic and idempotent).

Where they live: Redis, one hash per merchant (`Keys.merchant_codes`), normalised code → JSON list of
spans. The attributor reads the whole hash once per merchant and run (codes per merchant are bounded);
a ClickHouse mirror would only repeat it, and the ledger's `code` column already lets analysts group
commissions by code.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from redis.asyncio import Redis
from redis.exceptions import WatchError

from core import validate
from core.keys import Keys

# One merchant's codes are read whole by every attributor run: bound them.
MAX_CODES_PER_MERCHANT = 10_000
# Reassignments kept per code (each PUT that changes it adds a span).
MAX_SPANS_PER_CODE = 200
# On an order webhook: codes per order and characters per code. A code we cannot have issued (longer,
# other characters) is stored as sent and simply matches nothing.
MAX_ORDER_CODES = 20
MAX_ORDER_CODE_CHARS = 64


class Span(msgspec.Struct, frozen=True):
    """The code credited `creator_id` (at `rate_bps`, None: the usual rates) from `from_ms` (inclusive)
    until `to_ms` (exclusive; 0: still active)."""

    code: str  # as the merchant spelled it
    creator_id: str
    from_ms: int
    to_ms: int = 0
    rate_bps: int | None = None

    def active_at(self, at_ms: int) -> bool:
        return self.from_ms <= at_ms and (self.to_ms == 0 or at_ms < self.to_ms)


class InvalidCode(ValueError):
    pass


class TooManyCodes(ValueError):
    pass


def normalise(code: str) -> str:
    """Codes match case-insensitively in ASCII: `alice10` is `ALICE10`; any other letter stays as sent, so
    a code with one never matches a stored code (a stored code is ASCII, `check_code`). `str.upper` made an
    order's "ſale10" the merchant's SALE10 and credited its creator for a code the shop never applied."""
    return validate.ascii_upper(code)


def check_code(code: str) -> str:
    if not validate.is_code(code):
        raise InvalidCode("code must be 3-64 chars of [A-Za-z0-9_-]")
    return code


def active_span(spans: Iterable[Span], at_ms: int) -> Span | None:
    for span in spans:
        if span.active_at(at_ms):
            return span
    return None


# A Struct, not a frozen dataclass: one per code of every order the attributor books, and the frozen
# dataclass's __init__ cost about 8 times a Struct's (timeit).
class CodeCheck(msgspec.Struct, frozen=True, gc=False):
    """One code an order carried, as the attributor judged it."""

    code: str  # as the order sent it
    status: str  # "active", "inactive" (known, but not at the order's time) or "unknown"
    span: Span | None = None

    def as_dict(self) -> dict:
        span = self.span
        return {
            "code": self.code,
            "status": self.status,
            "creator_id": span.creator_id if span else None,
            "rate_bps": span.rate_bps if span else None,
            "active_from_ms": span.from_ms if span else None,
            "active_to_ms": (span.to_ms or None) if span else None,
        }


def check_order_codes(
    order_codes: Iterable[str], spans_by_code: dict[str, list[Span]], at_ms: int
) -> list[CodeCheck]:
    """Each distinct code of an order (first spelling kept, in the order's order) against the spans."""
    checks = []
    seen = set()
    for sent in order_codes:
        key = normalise(sent)
        if key in seen:
            continue
        seen.add(key)
        spans = spans_by_code.get(key)
        if not spans:
            checks.append(CodeCheck(sent, "unknown"))
            continue
        span = active_span(spans, at_ms)
        if span is None:
            # the span closest before the order explains why it did not count
            earlier = [s for s in spans if s.from_ms <= at_ms] or spans
            checks.append(CodeCheck(sent, "inactive", earlier[-1]))
        else:
            checks.append(CodeCheck(sent, "active", span))
    return checks


def first_active(checks: list[CodeCheck]) -> CodeCheck | None:
    """The code that credits: the first active one the order lists."""
    for check in checks:  # a loop, not a generator: once per order with a code the attributor books
        if check.status == "active":
            return check
    return None


def put_spans(spans: list[Span], code: str, creator_id: str, rate_bps: int | None, now_ms: int) -> list[Span]:
    """The history after assigning `code` at `now_ms` (unchanged when the open span already says so)."""
    history = list(spans)
    if history and history[-1].to_ms == 0:
        last = history[-1]
        if (last.creator_id, last.rate_bps) == (creator_id, rate_bps):
            return history  # the same assignment (another spelling is the same code)
        history[-1] = msgspec.structs.replace(last, to_ms=max(now_ms, last.from_ms))
    if len(history) >= MAX_SPANS_PER_CODE:
        raise TooManyCodes(f"a code keeps at most {MAX_SPANS_PER_CODE} assignments")
    start = max([now_ms, *(s.to_ms or s.from_ms for s in history)])
    history.append(Span(code, creator_id, start, 0, rate_bps))
    return history


def delete_spans(spans: list[Span], now_ms: int) -> list[Span] | None:
    """The history after removing the code at `now_ms`; None when it is not active."""
    if not spans or spans[-1].to_ms != 0:
        return None
    last = spans[-1]
    return [*spans[:-1], msgspec.structs.replace(last, to_ms=max(now_ms, last.from_ms))]


def view(spans: list[Span]) -> dict:
    """A code as the API shows it: its current state and every span."""
    last = spans[-1]
    return {
        "code": last.code,
        "creator_id": last.creator_id,
        "rate_bps": last.rate_bps,
        "active": last.to_ms == 0,
        "spans": [
            {
                "code": s.code,
                "creator_id": s.creator_id,
                "rate_bps": s.rate_bps,
                "active_from_ms": s.from_ms,
                "active_to_ms": s.to_ms or None,
            }
            for s in spans
        ],
    }


_spans = msgspec.json.Decoder(list[Span])


def decode_all(raw: dict[bytes, bytes]) -> dict[str, list[Span]]:
    """`CodeStore.raw_all`'s answer decoded: normalised code → its spans."""
    return {k.decode(): _spans.decode(v) for k, v in raw.items()}


def decode_spans(raw: bytes) -> list[Span]:
    """One code's stored spans (a value of `CodeStore.raw_all`)."""
    return _spans.decode(raw)


class CodeStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def put(
        self, merchant_id: str, code: str, creator_id: str, rate_bps: int | None, now_ms: int
    ) -> list[Span]:
        key = self._keys.merchant_codes(merchant_id)
        field = normalise(code)

        def change(spans: list[Span], count: int) -> list[Span]:
            if not spans and count >= MAX_CODES_PER_MERCHANT:
                raise TooManyCodes(f"a merchant holds at most {MAX_CODES_PER_MERCHANT} codes")
            return put_spans(spans, code, creator_id, rate_bps, now_ms)

        return await self._update(key, field, change)

    async def delete(self, merchant_id: str, code: str, now_ms: int) -> list[Span] | None:
        key = self._keys.merchant_codes(merchant_id)
        return await self._update(key, normalise(code), lambda spans, _count: delete_spans(spans, now_ms))

    async def _update(self, key: str, field: str, change) -> list[Span] | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.hget(key, field)
                    spans = _spans.decode(raw) if raw else []
                    updated = change(spans, await pipe.hlen(key))
                    if updated is None or updated == spans:
                        await pipe.unwatch()
                        return updated
                    pipe.multi()
                    pipe.hset(key, field, msgspec.json.encode(updated))
                    await pipe.execute()
                    return updated
                except WatchError:
                    continue

    async def get(self, merchant_id: str, code: str) -> list[Span]:
        raw = await self._redis.hget(self._keys.merchant_codes(merchant_id), normalise(code))
        return _spans.decode(raw) if raw else []

    async def of(self, merchant_id: str, sent: Iterable[str]) -> dict[str, list[Span]]:
        """Normalised code → its spans, for these codes only (one HMGET; unknown codes left out)."""
        fields = sorted({normalise(code) for code in sent})
        if not fields:
            return {}
        found = await self._redis.hmget(self._keys.merchant_codes(merchant_id), fields)
        return {field: _spans.decode(raw) for field, raw in zip(fields, found, strict=True) if raw}

    async def raw_all(self, merchant_id: str) -> dict[bytes, bytes]:
        """Every code's stored spans as stored, for `decode_all` off the event loop."""
        return await self._redis.hgetall(self._keys.merchant_codes(merchant_id))
