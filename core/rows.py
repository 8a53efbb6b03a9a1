"""One row contract per ClickHouse table: a typed record whose fields are the table's columns, in the
order of its migration (core/migrations/). Inserts name `Row.columns()`; reads decode a selected row with
`Row.read(row)` when the query selects the columns in that order (core/queries.py builds such selects
from `columns()`). Adding a column touches its migration, this module, and the code that fills it.

DateTime columns are written and read as Unix seconds (queries select `toUInt32(...)`), so a row reads
the same from clickhouse-driver and from chdb."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import msgspec


class Row(msgspec.Struct, array_like=True, frozen=True, gc=False):
    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return cls.__struct_fields__

    @classmethod
    def read(cls, row: Sequence[Any]) -> Self:
        """A selected row, by position; numbers that a backend returns as text (chdb's 64-bit integers)
        are converted."""
        return msgspec.convert(row, cls, strict=False)


def columnar(rows: Sequence[Row]) -> list[list[Any]]:
    """Rows as one list per column, the shape of a columnar insert."""
    return [list(column) for column in zip(*(msgspec.structs.astuple(r) for r in rows), strict=True)]


class ClickRow(Row):
    """`clicks` (0001). The ingester builds its columns directly, in this order (redirector/ingest)."""

    click_id: str
    ts: int
    ts_ms: int
    code: str
    creator_id: str
    merchant_id: str
    dest_host: str
    is_head: int
    is_bot: int
    bot_reason: str
    is_unique: int
    country: str
    device: str
    browser: str
    os: str
    referer_host: str
    user_agent: str
    ip_hash: int
    ip_prefix: str
    stream_entry: str
    variant: int  # 0040
    inapp: str  # 0045: the in-app browser of an open_in=browser link's click, '' otherwise


class LinkRow(Row):
    """`links` (0002): every version of every link."""

    code: str
    url: str
    creator_id: str
    merchant_id: str
    host: str
    created_at: int
    created_at_ms: int
    disabled: int
    updated_at_ms: int
    smart: str  # 0042


class OrderEventRow(Row):
    """`order_events` (0010): every accepted webhook event, its items as parallel arrays."""

    merchant_id: str
    webhook_id: str
    event_type: str
    order_id: str
    click_id: str
    currency: str
    occurred_at: int
    occurred_ms: int
    received_ms: int
    ingested_ms: int
    item_sku: list[str]
    item_category: list[str]
    item_unit_price_minor: list[int]
    item_quantity: list[int]
    body_sha256: str
    stream_entry: str
    discount_codes: list[str] = []  # 0030


class CommissionRow(Row):
    """`commissions` (0011): the append-only ledger (attribution/ledger.py explains the entries)."""

    merchant_id: str
    order_id: str
    entry_id: str
    kind: str
    status: str
    amount_minor: int
    orders: int
    currency: str
    creator_id: str
    click_id: str
    sku: str
    quantity: int
    basis_minor: int
    rate_bps: int
    rate_rule: str
    rate_version: int
    reason: str
    event_id: str
    effective_at: int
    effective_ms: int
    booked_ms: int
    run_id: str
    attributed_by: str = ""  # 0031: 'click', 'code' or ''
    code: str = ""  # 0031: the discount code that credited the order


class PayoutLineRow(Row):
    """`payout_lines` (0035): a ledger row a payout pays (sign +1) or releases on failure (sign -1)."""

    merchant_id: str
    payout_id: str
    batch_id: str
    creator_id: str
    currency: str
    order_id: str
    entry_id: str
    run_id: str
    sign: int
    kind: str
    sku: str
    quantity: int
    basis_minor: int
    rate_bps: int
    amount_minor: int
    attributed_by: str
    booked_ms: int
    created_at: int
    created_ms: int
