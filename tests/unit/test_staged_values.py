"""What the attributor reads back of a staged value (attribution/outbox.py `_staged_events`): a chunk's
array under `chunk:`, or one event under its own id (an earlier release's layout); anything else cannot be
announced (None) and is dead-lettered whole. And `stage` refuses encodings that do not match its events."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from attribution import events_out
from attribution.outbox import Outbox, _staged_events
from core.keys import Keys

IDS = {"merchant_id": "m1", "run_id": "r1", "order_id": "A-1"}


def _event(event_id: str, data: dict) -> events_out.Event:
    return events_out.Event(event_id, "commission.booked", ("merchant:m1",), 1, data)


GOOD, OTHER = _event("evt_a", IDS), _event("evt_b", IDS | {"order_id": "A-2"})


def _array(*events: events_out.Event) -> bytes:
    return b"[" + b",".join(events_out.encode(e) for e in events) + b"]"


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        (b"chunk:evt_a", _array(GOOD, OTHER), [GOOD, OTHER]),
        (b"chunk:evt_a", b"[]", []),  # nothing to announce, and unstaged like any other
        (b"evt_a", events_out.encode(GOOD), [GOOD]),  # an earlier release's layout
        (b"evt_other", events_out.encode(GOOD), None),  # filed under another id: never unstaged
        (b"chunk:evt_a", events_out.encode(GOOD), None),  # a chunk's field, not an array
        (b"evt_a", _array(GOOD), None),  # an array without the chunk's prefix
        (b"chunk:evt_a", _array(GOOD, _event("evt_c", {"merchant_id": "m1"})), None),  # ids missing
        (b"chunk:evt_a", _array(_event("evt_c", IDS | {"run_id": 7})), None),  # an id not text
        (b"chunk:evt_a", b"[{not json", None),
        (b"chunk:evt_a", b"", None),
        (b"evt_a", b"{}", None),
    ],
)
def test_a_staged_value_reads_as_its_events_or_none(field, raw, expected) -> None:
    assert _staged_events(field, raw) == expected


def test_stage_refuses_encodings_that_do_not_match_its_events() -> None:
    # No connection is made: the check comes before the write (port 1 refuses anything).
    outbox = Outbox(Redis.from_url("redis://127.0.0.1:1/0"), Keys("t:"))
    with pytest.raises(ValueError, match="1 encoded events for 2 events"):
        asyncio.run(outbox.stage([GOOD, OTHER], [events_out.encode(GOOD)]))
