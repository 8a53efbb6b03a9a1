"""Outgoing events as plain data: their types, who may receive them, their deterministic ids and the
payload an endpoint receives. Pure functions; attribution/outbox.py stores and fans them out.

Adding an event type (payouts, say) is one line in `EVENT_TYPES` plus one `Outbox.emit(event(...))` call
where the fact happens; endpoints can subscribe to it at once and the guide (docs/webhooks.md) lists it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

import msgspec

from core.links import Link, iso_ms, link_json
from core.rows import CommissionRow

# Every event type an endpoint may subscribe to, with what it announces (shown in errors and the guide).
EVENT_TYPES = {
    "commission.booked": "commission accrued for an order (pending until the lock period ends)",
    "commission.reversed": "commission taken back after a refund or cancel",
    "commission.approved": "pending commission became approved (payable)",
    "link.created": "a short link was created",
    "link.updated": "a short link changed (destination, owner, disabled)",
}
# Ledger kinds that announce something to the outside; `none` and `flag` rows carry no money.
KIND_EVENT = {
    "accrual": "commission.booked",
    "reversal": "commission.reversed",
    "approval": "commission.approved",
}
EVENT_ID_PREFIX = "evt_"
EVENT_ID_HEX_CHARS = 32  # 128 bits of SHA-256: unique among every event ever emitted


class Event(msgspec.Struct, frozen=True):
    id: str
    type: str
    # The owners that may receive it ("creator:alice", "merchant:brand1"): endpoints are matched on these.
    subjects: tuple[str, ...]
    occurred_ms: int
    data: dict


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(payload: bytes) -> Event:
    return _decoder.decode(payload)


def event_id(*parts: str) -> str:
    """The id of the event that announces exactly these facts: the same facts always give the same id,
    which is what makes emission idempotent (outbox.py keeps each id once)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return EVENT_ID_PREFIX + digest[:EVENT_ID_HEX_CHARS]


def payload(event: Event) -> bytes:
    """The body an endpoint receives (Standard Webhooks' shape: type, timestamp, data)."""
    return _encoder.encode({"type": event.type, "timestamp": iso_ms(event.occurred_ms), "data": event.data})


def subjects(creator_id: str | None, merchant_id: str | None) -> tuple[str, ...]:
    if creator_id and merchant_id:
        return (f"creator:{creator_id}", f"merchant:{merchant_id}")
    if creator_id:
        return (f"creator:{creator_id}",)
    return (f"merchant:{merchant_id}",) if merchant_id else ()


def _line_order(row: CommissionRow) -> tuple[str, str, str]:
    # the click too: a run that moves an order's click books an entry id twice for one creator
    return (row.entry_id, row.status, row.click_id)


def commission_events(rows: Iterable[CommissionRow]) -> list[Event]:
    """One event per (order, kind, creator) among ledger rows booked together (one attributor chunk).
    The id covers the run and the entry ids, so a rerun that books nothing emits nothing, and the same
    booking announced twice (crash recovery) has one id."""
    groups: dict[tuple[str, str, str, str], list[CommissionRow]] = defaultdict(list)
    for row in rows:
        if row.kind in KIND_EVENT:
            groups[(row.merchant_id, row.order_id, row.kind, row.creator_id)].append(row)
    events = []
    subjects_of: dict[tuple[str, str], tuple[str, ...]] = {}  # a run books many orders of one creator
    # One pass per group builds the lines, the entry ids and the sum: a run announces 100,000 events on
    # the event loop's thread, which every step of the run shares.
    for (merchant_id, order_id, kind, creator_id), group in sorted(groups.items()):
        if len(group) > 1:
            group.sort(key=_line_order)
        kind_type = KIND_EVENT[kind]
        owners = subjects_of.get((creator_id, merchant_id))
        if owners is None:
            owners = subjects_of[(creator_id, merchant_id)] = subjects(creator_id, merchant_id)
        entry_ids = []
        lines = []
        amount_minor = 0
        status = ""
        for r in group:
            entry_ids.append(f"{r.entry_id}/{r.status}")
            # An approval is a transfer (-P pending, +P approved): announce the approved side.
            if kind == "approval" and r.status != "approved":
                continue
            if not lines:
                status = r.status
            amount_minor += r.amount_minor
            lines.append(
                {
                    "entry_id": r.entry_id,
                    "sku": r.sku,
                    "quantity": r.quantity,
                    "basis_minor": r.basis_minor,
                    "rate_bps": r.rate_bps,
                    "amount_minor": r.amount_minor,
                    "status": r.status,
                }
            )
        first = group[0]
        run_id = first.run_id
        events.append(
            Event(
                id=event_id(kind_type, merchant_id, order_id, creator_id, run_id, *entry_ids),
                type=kind_type,
                subjects=owners,
                occurred_ms=first.booked_ms,
                data={
                    "merchant_id": merchant_id,
                    "order_id": order_id,
                    "creator_id": creator_id,
                    "click_id": first.click_id,
                    "currency": first.currency,
                    "amount_minor": amount_minor,
                    "status": status,
                    "run_id": run_id,
                    "lines": lines,
                },
            )
        )
    return events


def link_event(event_type: str, link: Link, public_url: str) -> Event:
    """link.created or link.updated for one version of a link (its id: the code, the version time and
    the content, so two changes within one millisecond are two events)."""
    version_ms = link.updated_at_ms or link.created_at_ms
    data = link_json(link, public_url)
    content = hashlib.sha256(_encoder.encode(data)).hexdigest()
    return Event(
        id=event_id(event_type, link.code, str(version_ms), content),
        type=event_type,
        subjects=subjects(link.creator_id, link.merchant_id),
        occurred_ms=version_ms,
        data=data,
    )
