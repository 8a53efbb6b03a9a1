"""Order webhooks: Standard Webhooks verification over the raw bytes, the body schema, and idempotent
acceptance into the `Keys.orders` stream.

Verification happens before any parsing: HMAC-SHA256 of `{id}.{timestamp}.{raw body}` under each active
secret, compared in constant time with every `v1,` signature listed; timestamps more than 300 s off
either way are refused. Acceptance is one Lua script: it records the body digest under
`Keys.webhook_seen(merchant, webhook-id)` for `IDEMPOTENCY_TTL_MS` and appends the event to the stream in
the same atomic step, so 25 concurrent deliveries of one id append one entry, and the same id with another
body is told apart (409). Past the TTL a redelivery is accepted and stored as a second order event; the
attributor still counts each webhook-id once (ledger.fold).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from redis.asyncio import Redis

from attribution import codes, money, payouts
from core import clock, repeats, validate
from core.keys import Keys
from core.redisclient import eval_replicated

TOLERANCE_S = 300
MAX_BODY_BYTES = 256 * 1024
# Standard Webhooks senders retry for about three days; a week covers every retry with a margin.
IDEMPOTENCY_TTL_MS = 7 * 86_400_000
MAX_WEBHOOK_ID_CHARS = 256
STREAM_VERSION = "1"

# Refusal reasons (each one a metric label and a test).
MISSING_HEADERS = "missing_headers"
BAD_TIMESTAMP = "bad_timestamp"
STALE_TIMESTAMP = "stale_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
BAD_SIGNATURE = "bad_signature"
OCCURRED_IN_FUTURE = "occurred_in_future"
BAD_WEBHOOK_ID = "bad_webhook_id"
# What a refusal's message says besides its reason, where the reason alone does not tell the sender what
# to change.
# What a `bad_webhook_id` refusal says, so that the sender knows what to change.
WEBHOOK_ID_RULE = (
    "webhook-id must be printable ASCII (no control characters, no other characters, no space at either end)"
)


def sign(secret: str, webhook_id: str, timestamp_s: int, body: bytes) -> str:
    """Our own signer (the tests also sign with the official `standardwebhooks` package)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp_s}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(body: bytes, headers, secrets: list[str], now_s: int) -> str | None:
    """None if the delivery is authentic and fresh, else the refusal reason. `headers` is any mapping
    with case-insensitive get (Starlette Headers) or lower-case keys."""
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (webhook_id and timestamp and signatures) or len(webhook_id) > MAX_WEBHOOK_ID_CHARS:
        return MISSING_HEADERS
    if not validate.is_webhook_id(webhook_id):
        # Before the signature: an id past ASCII would mostly fail it (its bytes are read as Latin-1, most
        # senders sign UTF-8), and `bad_signature` would hide the cause from the sender.
        return BAD_WEBHOOK_ID
    timestamp_s = validate.timestamp_s(timestamp)
    if timestamp_s is None:  # ASCII digits only: "²".isdigit() is true, and int() refuses it
        return BAD_TIMESTAMP
    if timestamp_s < now_s - TOLERANCE_S:
        return STALE_TIMESTAMP
    if timestamp_s > now_s + TOLERANCE_S:
        return FUTURE_TIMESTAMP
    offered = []
    for part in signatures.split(" "):
        version, _, value = part.partition(",")
        if version == "v1":
            try:
                offered.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    matched = False
    for secret in secrets:
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"))
        except (binascii.Error, ValueError):
            continue
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        for candidate in offered:
            # No early exit: the time taken does not depend on which secret or signature matched.
            matched |= hmac.compare_digest(expected, candidate)
    return None if matched else BAD_SIGNATURE


# --- body schema -----------------------------------------------------------------------------------
# The shapes every stored event has had since the order stream began (`read`): what a webhook must be
# besides is checked by `parse` alone, so that an event accepted with 202 is never refused later.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Currency = Annotated[str, msgspec.Meta(pattern=validate.CURRENCY_PATTERN)]


DiscountCode = Annotated[str, msgspec.Meta(min_length=1, max_length=codes.MAX_ORDER_CODE_CHARS)]


class WebhookItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Id
    unit_price_minor: Annotated[int, msgspec.Meta(ge=0, le=money.MAX_UNIT_PRICE_MINOR)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=money.MAX_QUANTITY)]
    category: Annotated[str, msgspec.Meta(max_length=128)] = ""


class OrderData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order_id: Id
    currency: Currency
    occurred_at: datetime
    # Length only: the merchant echoes what a viewer's URL carried, and an order refused for it would lose
    # its code's credit too. A click id that is not ours matches no click (attribution/decision.py).
    click_id: Annotated[str, msgspec.Meta(max_length=128)] = ""
    items: Annotated[list[WebhookItem], msgspec.Meta(max_length=money.MAX_ITEMS_PER_ORDER)] = []
    discount_codes: Annotated[list[DiscountCode], msgspec.Meta(max_length=codes.MAX_ORDER_CODES)] = []


class WebhookBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["order.created", "order.refunded", "order.cancelled"]
    data: OrderData


_decoder = msgspec.json.Decoder(WebhookBody)
# The range of ClickHouse's DateTime (seconds since 1970 in a UInt32), with a year to spare.
OCCURRED_MIN = datetime(1970, 1, 1, tzinfo=UTC)
OCCURRED_MAX = datetime(2105, 1, 1, tzinfo=UTC)


def parse(body: bytes) -> WebhookBody:
    """A webhook's body, as it is admitted: `read` and the rules added since events were first stored
    (a key given twice, control characters in an id, SKU or category, a payout's pseudo order id).
    Raises msgspec.ValidationError / DecodeError with a readable reason."""
    parsed = read(body)
    try:
        repeated = repeats.repeated_json_key(body)
    except repeats.Unscannable as exc:
        raise msgspec.ValidationError(f"the body cannot be read: {exc}") from None
    if repeated is not None:
        raise msgspec.ValidationError(f"the body names the key {repeats.shown(repeated)} twice in one object")
    data = parsed.data
    # What the trace, review and order pages can name (merchant_api.check_order_id), one rule for all.
    if validate.has_control_chars(data.order_id):
        raise msgspec.ValidationError("data.order_id must not contain control characters")
    if payouts.is_reserved_order_id(data.order_id):
        raise msgspec.ValidationError(
            f"data.order_id must not start with {payouts.ORDER_PREFIX!r} (reserved)"
        )
    for index, item in enumerate(data.items):
        if validate.has_control_chars(item.sku) or validate.has_control_chars(item.category):
            raise msgspec.ValidationError(
                f"data.items[{index}]: sku and category must not contain control characters"
            )
    return parsed


def read(body: bytes) -> WebhookBody:
    """A body as the order stream holds it (the ingester): the checks every stored event has passed since
    the stream began, and no later one, so that no event accepted with 202 is refused at ingestion.
    Raises msgspec.ValidationError / DecodeError with a readable reason."""
    parsed = _decoder.decode(body)
    if parsed.data.occurred_at.tzinfo is None:
        raise msgspec.ValidationError("data.occurred_at must carry a time zone (e.g. 2026-11-27T10:00:00Z)")
    if not OCCURRED_MIN <= parsed.data.occurred_at < OCCURRED_MAX:
        # Refused here, not at ingestion: a row ClickHouse's DateTime cannot hold would fail its insert.
        raise msgspec.ValidationError("data.occurred_at must lie between 1970 and 2105")
    for index, code in enumerate(parsed.data.discount_codes):
        if validate.has_control_chars(code):
            raise msgspec.ValidationError(f"data.discount_codes[{index}] must not contain control characters")
    if parsed.type in ("order.created", "order.refunded") and not parsed.data.items:
        raise msgspec.ValidationError(f"{parsed.type} must list its items")
    return parsed


def future_refusal(parsed: WebhookBody, now_ms: int) -> str | None:
    """Why the event cannot be dated as it is (an `occurred_at` ahead of our clock by more than the
    signature's own tolerance), or None. An order from the future would be judged by code, rate and
    policy versions made after it was booked (ledger.Folded.terms_ms); a sender's clock that runs
    ahead is the one cause, and it is the sender's to fix."""
    ahead_ms = clock.datetime_ms(parsed.data.occurred_at) - now_ms
    if ahead_ms > TOLERANCE_S * 1000:
        return f"data.occurred_at is {ahead_ms // 1000} s ahead of our clock (at most {TOLERANCE_S} s)"
    return None


def amount_refusal(parsed: WebhookBody) -> str | None:
    """Why the event's amounts cannot be booked exactly (a line or the order past
    money.MAX_ORDER_TOTAL_MINOR), or None. Checked at the endpoint, not in `parse`: an event that got into
    the stream before this check is still stored, and the ledger flags it instead of booking it."""
    return money.amount_problem((i.unit_price_minor, i.quantity) for i in parsed.data.items)


# --- acceptance --------------------------------------------------------------------------------------
NEW, DUPLICATE, CONFLICT = 0, 1, 2

_ACCEPT = """
local seen = redis.call('GET', KEYS[1])
if seen then
    if seen == ARGV[1] then
        -- Rewritten unchanged: a WAIT after this call also covers the first delivery's write.
        redis.call('SET', KEYS[1], seen, 'KEEPTTL')
        return 1
    end
    return 2
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'v', ARGV[3], 'm', ARGV[4], 'w', ARGV[5], 't', ARGV[6], 'b', ARGV[7])
return 0
"""


# How long an accepted webhook waits for replicas (`min_replicas_acked`) before the merchant gets a 503.
WEBHOOK_WAIT_TIMEOUT_MS = 1_000


class Acceptor:
    def __init__(
        self, redis: Redis, keys: Keys, ttl_ms: int = IDEMPOTENCY_TTL_MS, min_replicas_acked: int = 0
    ) -> None:
        """With `min_replicas_acked`, an acceptance (or a duplicate's answer) counts only once that many
        replicas hold it (Redis WAIT); otherwise `accept` raises core.redisclient.ReplicasBehind and the
        merchant is asked to send it again (its retry is then stored once, or answered as a duplicate)."""
        self._redis = redis
        self._keys = keys
        self._ttl_ms = ttl_ms
        self._min_replicas = min_replicas_acked
        self._script = redis.register_script(_ACCEPT)

    async def accept(self, merchant_id: str, webhook_id: str, body: bytes, received_ms: int) -> int:
        """NEW (appended), DUPLICATE (same id and body: nothing appended) or CONFLICT (same id,
        another body)."""
        digest = hashlib.sha256(body).hexdigest()
        keys = [self._keys.webhook_seen(merchant_id, webhook_id), self._keys.orders]
        args = [digest, self._ttl_ms, STREAM_VERSION, merchant_id, webhook_id, received_ms, body]
        if self._min_replicas:
            return int(
                await eval_replicated(
                    self._redis, _ACCEPT, keys, args, self._min_replicas, WEBHOOK_WAIT_TIMEOUT_MS
                )
            )
        return int(await self._script(keys=keys, args=args))
