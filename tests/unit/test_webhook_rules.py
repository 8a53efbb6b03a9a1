"""Webhook verification and stream-entry decoding as pure functions: our verifier accepts what the
official `standardwebhooks` package signs and refuses each tampering, and entries decode to exact rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from standardwebhooks import Webhook

from attribution import events, trace, webhooks
from core.streams import Poison

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
BODY = (
    b'{"type":"order.created","data":{"order_id":"A-1","currency":"EUR",'
    b'"occurred_at":"2026-11-27T10:00:00.123Z","items":[{"sku":"S","unit_price_minor":5,"quantity":1}]}}'
)
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())


def headers(at: datetime = NOW, secret: str = SECRET, msg_id: str = "msg_1", body: bytes = BODY) -> dict:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


@pytest.mark.parametrize(
    ("body", "hdrs", "secrets", "expected"),
    [
        (BODY, headers(), [SECRET], None),
        (BODY, headers(), [OTHER, SECRET], None),  # rotation: either active secret
        (BODY, headers(at=NOW - timedelta(seconds=300)), [SECRET], None),  # edge: exactly 300 s old
        (BODY, headers(at=NOW + timedelta(seconds=300)), [SECRET], None),
        (BODY, headers(at=NOW - timedelta(seconds=301)), [SECRET], webhooks.STALE_TIMESTAMP),
        (BODY, headers(at=NOW + timedelta(seconds=301)), [SECRET], webhooks.FUTURE_TIMESTAMP),
        (BODY, headers(secret=OTHER), [SECRET], webhooks.BAD_SIGNATURE),
        (BODY.replace(b"A-1", b"A-2"), headers(), [SECRET], webhooks.BAD_SIGNATURE),
        (BODY + b" ", headers(), [SECRET], webhooks.BAD_SIGNATURE),
        (BODY, {**headers(), "webhook-id": "msg_2"}, [SECRET], webhooks.BAD_SIGNATURE),
        (
            BODY,
            {**headers(), "webhook-signature": "v2," + headers()["webhook-signature"][3:]},
            [SECRET],
            webhooks.BAD_SIGNATURE,
        ),
        (BODY, {**headers(), "webhook-signature": "v1,!!notbase64"}, [SECRET], webhooks.BAD_SIGNATURE),
        (BODY, {**headers(), "webhook-timestamp": "12e3"}, [SECRET], webhooks.BAD_TIMESTAMP),
        # isdigit() accepts these; int() raises on superscripts and reads other scripts' digits
        *(
            (BODY, {**headers(), "webhook-timestamp": ts}, [SECRET], webhooks.BAD_TIMESTAMP)
            for ts in ("²", "¹²³", "\xb2", "١٧٦٤٢٣٧٦٠٠", "１７６４２３７６００", f"{NOW_S}\n", f" {NOW_S}")
        ),
        *(
            (BODY, {**headers(), "webhook-timestamp": ts}, [SECRET], webhooks.BAD_TIMESTAMP)
            for ts in ("-1", "+1", "", "9" * 13, "1.5", "\x00", "0x10")
            if ts  # an empty header is a missing one
        ),
        (BODY, {**headers(), "webhook-timestamp": ""}, [SECRET], webhooks.MISSING_HEADERS),
        (BODY, {k: v for k, v in headers().items() if k != "webhook-id"}, [SECRET], webhooks.MISSING_HEADERS),
        (BODY, headers(), [], webhooks.BAD_SIGNATURE),  # no active secret
    ],
)
def test_verify(body: bytes, hdrs: dict, secrets: list[str], expected: str | None) -> None:
    assert webhooks.verify(body, hdrs, secrets, NOW_S) == expected


# Each kind a webhook-id must not hold (core/validate.py WEBHOOK_ID_PATTERN): C0, DEL, C1, the Unicode line
# separators, other characters past ASCII (read as Latin-1, signed as the sender encoded them), and spaces
# at either end (not part of a header's value: a proxy drops them). Signed as they stand, so only the rule
# refuses them.
BAD_WEBHOOK_IDS = (
    "msg\x00",
    "msg_1\n",
    "\tmsg_1",
    "msg\x1b[31m",
    "msg\x7f",
    "msg\x85",
    "msg\x9b1",
    "msg\u2028",
    "msg\u2029x",
    "msg_\xe9",
    "msg_\xa0",
    "msg\xad1",
    "msg_\uff4d",
    "msg_\U0001f600",
    " ",
    "   ",
    " msg_1",
    "msg_1 ",
)
GOOD_WEBHOOK_IDS = (
    "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    "a",
    "evt:1:2",
    "rev:msg:0",
    "{orders}",
    "a.b.c",
    "order 42 created",
    "~!@#$%^&*()[]<>'\"\\/",
    "x" * webhooks.MAX_WEBHOOK_ID_CHARS,
)


@pytest.mark.parametrize(
    ("msg_id", "expected"),
    [*((i, webhooks.BAD_WEBHOOK_ID) for i in BAD_WEBHOOK_IDS), *((i, None) for i in GOOD_WEBHOOK_IDS)],
)
def test_webhook_id_rule(msg_id: str, expected: str | None) -> None:
    assert webhooks.verify(BODY, headers(msg_id=msg_id), [SECRET], NOW_S) == expected


@pytest.mark.parametrize("msg_id", BAD_WEBHOOK_IDS)
def test_a_webhook_id_refused_now_still_ingests(msg_id: str) -> None:
    """Ids the rule refuses were accepted with 202 before it: those in the stream are ingested as stored."""
    assert webhooks.verify(BODY, headers(msg_id=msg_id), [SECRET], NOW_S) == webhooks.BAD_WEBHOOK_ID
    fields = {b"v": b"1", b"m": b"m1", b"w": msg_id.encode(), b"t": b"1764237600500", b"b": BODY}
    assert events.to_row("1-0", fields).webhook_id == msg_id


def test_our_signer_matches_the_official_one() -> None:
    assert webhooks.sign(SECRET, "msg_1", NOW_S, BODY) == headers()["webhook-signature"]


@pytest.mark.parametrize(
    "change",
    [
        (b'"order_id":"A-1"', b'"order_id":"A-1\\t"'),  # a control character in the order id
        (b'"order_id":"A-1"', b'"order_id":"payout:m1.x"'),  # a payout's pseudo order id
        (b'"sku":"S"', b'"sku":"S\\u2028"'),
        (b'"type":"order.created"', b'"type":"order.created","type":"order.created"'),  # a key twice
    ],
)
def test_a_rule_added_since_refuses_at_the_webhook_and_never_at_ingestion(change) -> None:
    """An event accepted with 202 before a rule existed (or by a server not yet upgraded) is still in the
    stream: ingested, not dead-lettered. Only the webhook applies the new rules."""
    body = BODY.replace(*change)
    assert body != BODY
    with pytest.raises(msgspec.ValidationError):
        webhooks.parse(body)
    fields = {b"v": b"1", b"m": b"m1", b"w": b"msg_1", b"t": b"1764237600500", b"b": body}
    assert events.to_row("1-0", fields).order_id.startswith(("A-1", "payout:"))


def test_entry_decodes_to_exact_row() -> None:
    fields = {b"v": b"1", b"m": b"m1", b"w": b"msg_1", b"t": b"1764237600500", b"b": BODY}
    row = msgspec.structs.astuple(events.to_row("1-0", fields))
    assert row[:10] == (
        "m1",
        "msg_1",
        "order.created",
        "A-1",
        "",
        "EUR",
        1795773600,
        1795773600123,
        1764237600500,
        0,
    )
    assert row[10:14] == (["S"], [""], [5], [1])


GOOD = {b"v": b"1", b"m": b"m1", b"w": b"x", b"t": b"1", b"b": BODY}


def without(name: bytes) -> dict:
    return {k: v for k, v in GOOD.items() if k != name}


# Every way an order-stream entry can fail, each with its reason (also stored end to end by
# tests/integration/test_order_dead_letters.py). Before, all but the version were `undecodable` and the
# version was `unknown_version` where the click and link streams say `schema_version`.
ORDER_POISON = [
    ({**GOOD, b"v": b"9"}, "schema_version"),
    (without(b"v"), "schema_version"),
    (without(b"b"), "missing_order"),
    ({**GOOD, b"b": b"{"}, "undecodable"),
    ({**GOOD, b"b": b"\xff"}, "undecodable"),
    ({**GOOD, b"b": b"\xff\xfe"}, "undecodable"),
    ({**GOOD, b"b": b"[]"}, "invalid_order"),
    ({**GOOD, b"b": b"[1, 2]"}, "invalid_order"),
    ({**GOOD, b"b": BODY.replace(b"order.created", b"order.paid")}, "invalid_order"),
    ({**GOOD, b"b": BODY.replace(b"2026-11-27", b"1969-12-31")}, "invalid_order"),
    ({**GOOD, b"b": BODY.replace(b'"quantity":1', b'"quantity":0')}, "invalid_order"),
    (without(b"m"), "missing_merchant_id"),
    ({**GOOD, b"m": b"\xff"}, "invalid_merchant_id"),
    ({**GOOD, b"m": b"m\xff"}, "invalid_merchant_id"),
    (without(b"w"), "missing_webhook_id"),
    ({**GOOD, b"w": b"\xfe"}, "invalid_webhook_id"),
    ({**GOOD, b"w": b"w\xc3"}, "invalid_webhook_id"),
    (without(b"t"), "missing_received_ms"),
    # received_ms is a UInt64 column: out of it, the batch's insert failed for ever
    ({**GOOD, b"t": b"-1"}, "invalid_received_ms"),
    ({**GOOD, b"t": str(2**64).encode()}, "invalid_received_ms"),
    ({**GOOD, b"t": b"+5"}, "invalid_received_ms"),
    ({**GOOD, b"t": b""}, "invalid_received_ms"),
    ({**GOOD, b"t": b"soon"}, "invalid_received_ms"),
    ({**GOOD, b"t": b"1_0"}, "invalid_received_ms"),
    # int() raised ValueError past 4,300 digits (not Poison): the entry stopped the order stream
    ({**GOOD, b"t": b"9" * 5000}, "invalid_received_ms"),
    ({**GOOD, b"t": "١٢".encode()}, "invalid_received_ms"),
    # within UInt64, but no time a trace can show (a year past 9999 made it a 500) nor any clock's
    ({**GOOD, b"t": str(2**64 - 1).encode()}, "invalid_received_ms"),
    ({**GOOD, b"t": str(2**63).encode()}, "invalid_received_ms"),
    ({**GOOD, b"t": b"253402300800000"}, "invalid_received_ms"),  # year 10000
    ({**GOOD, b"t": str(events.RECEIVED_MAX_MS).encode()}, "invalid_received_ms"),  # 2105
    # put back by hand from the dead letters: the reason and entry id are this failure's
    ({**GOOD, b"v": b"0", b"dead_reason": b"old", b"dead_entry": b"1-1"}, "schema_version"),
]


@pytest.mark.parametrize(("fields", "reason"), ORDER_POISON)
def test_poison_entries(fields: dict, reason: str) -> None:
    with pytest.raises(Poison) as caught:
        events.to_row("1-0", fields)
    assert caught.value.reason == reason


@pytest.mark.parametrize("received", [b"0", b"1", str(events.RECEIVED_MAX_MS - 1).encode()])
def test_receipt_times_at_the_bounds_are_stored(received: bytes) -> None:
    assert events.to_row("1-0", {**GOOD, b"t": received}).received_ms == int(received)


ROW_FACTS = ("m1", "w1", "order.created", "A-1", "", "EUR", 1_764_237_600_000, ["S"], [""], [5], [1], [])


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        (0, 0),
        (1_764_237_600_500, 1_764_237_600_500),
        (events.RECEIVED_MAX_MS - 1, events.RECEIVED_MAX_MS - 1),
        # stored before the ingester bounded it: read as not known, as the trace then shows it (no 500)
        (events.RECEIVED_MAX_MS, 0),
        (253_402_300_800_000, 0),
        (2**63, 0),
        (2**64 - 1, 0),
    ],
)
def test_a_stored_receipt_time_no_acceptor_wrote_reads_as_unknown(stored: int, read: int) -> None:
    from_facts = events.event_of_facts((*ROW_FACTS, stored))
    from_text = events.event_of_facts((*ROW_FACTS[:6], str(ROW_FACTS[6]), *ROW_FACTS[7:], str(stored)))
    row = events.to_row("1-0", GOOD)
    from_row = events.event_of(msgspec.structs.replace(row, received_ms=stored))
    assert from_facts.received_ms == from_text.received_ms == from_row.received_ms == read
    shown = trace._event(from_facts)["received_at"]
    assert (shown is None) == (read == 0)


@pytest.mark.parametrize(
    "occurred_at", ["1969-12-31T23:59:59Z", "2106-03-01T00:00:00Z", "9999-01-01T00:00:00Z"]
)
def test_an_order_time_clickhouse_cannot_store_is_refused(occurred_at: str) -> None:
    body = BODY.replace(b"2026-11-27T10:00:00.123Z", occurred_at.encode())
    assert body != BODY
    with pytest.raises(webhooks.msgspec.ValidationError, match="between 1970 and 2105"):
        webhooks.parse(body)


def _order(*items: tuple[int, int], kind: str = "order.created") -> bytes:
    item = '{{"sku":"S{}","unit_price_minor":{},"quantity":{}}}'
    lines = ",".join(item.format(i, p, q) for i, (p, q) in enumerate(items))
    return BODY.replace(b'"order.created"', f'"{kind}"'.encode()).replace(
        b'[{"sku":"S","unit_price_minor":5,"quantity":1}]', f"[{lines}]".encode()
    )


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (_order((10**12, 10)), False),  # line and order exactly 10^13
        (_order((10**12, 5), (10**12, 5)), False),
        (_order((10**7, 1_000_000)), False),
        (_order((10**12, 11)), True),  # each field within its limit, the line not
        (_order((10**12, 1_000_000)), True),  # 10^18: the line that made sums wrap
        (_order((10**12, 5), (10**12, 5), (1, 1)), True),  # the order one minor unit over
        (_order(*[(10**12, 1)] * 11), True),
        (_order((10**12, 1_000_000), kind="order.refunded"), True),  # refunds obey the same bounds
    ],
)
def test_amounts_that_cannot_be_booked_exactly(body: bytes, refused: bool) -> None:
    parsed = webhooks.parse(body)  # the schema alone takes it: the stream may still carry such events
    reason = webhooks.amount_refusal(parsed)
    assert (reason is not None) == refused, reason
    if refused:
        assert "exceeds 10000000000000" in reason


@pytest.mark.parametrize(
    "item",
    [(10**12 + 1, 1), (1, 1_000_001), (-1, 1), (1, 0)],
)
def test_fields_past_their_own_limit_are_malformed(item: tuple[int, int]) -> None:
    with pytest.raises(webhooks.msgspec.ValidationError):
        webhooks.parse(_order(item))


def test_more_items_than_an_order_may_list_is_malformed() -> None:
    assert webhooks.amount_refusal(webhooks.parse(_order(*[(1, 1)] * 1_000))) is None
    with pytest.raises(webhooks.msgspec.ValidationError, match="length <= 1000"):
        webhooks.parse(_order(*[(1, 1)] * 1_001))


OCCURRED_MS = 1_795_773_600_123  # BODY's occurred_at, 2026-11-27T10:00:00.123Z


@pytest.mark.parametrize(
    ("now_ms", "refused"),
    [
        (OCCURRED_MS, False),
        (OCCURRED_MS + 3_600_000, False),  # sent an hour late: the usual case
        (OCCURRED_MS - 300_000, False),  # a sender's clock 5 minutes ahead: the signature's tolerance
        (OCCURRED_MS - 301_000, True),
        (OCCURRED_MS - 86_400_000, True),
        (0, True),
    ],
)
def test_an_order_dated_ahead_of_our_clock(now_ms: int, refused: bool) -> None:
    reason = webhooks.future_refusal(webhooks.parse(BODY), now_ms)
    assert (reason is not None) == refused, reason
    # Never refused later: the stream's reader takes any date the table can hold.
    assert webhooks.read(BODY).data.occurred_at
