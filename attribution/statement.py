"""A payout's statement: one CSV line per ledger row it pays, so a creator (or the merchant's accountant)
can check every cent. The amounts add up to the payout's amount: reversals netted against it are lines
too, with negative amounts."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime

from core.rows import PayoutLineRow

HEADER = (
    "order_id",
    "sku",
    "quantity",
    "basis_minor",
    "rate_bps",
    "amount_minor",
    "booked_date",
    "attributed_by",
    "kind",
    "entry_id",
)


def booked_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def render(lines: Iterable[PayoutLineRow]) -> str:
    """The CSV text (RFC 4180: CRLF line ends, quoting only where needed). A cell starting with a
    formula character is prefixed with a quote, so a spreadsheet shows it rather than running it."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for line in lines:
        writer.writerow(
            (
                _cell(line.order_id),
                _cell(line.sku),
                line.quantity,
                line.basis_minor,
                line.rate_bps,
                line.amount_minor,
                booked_date(line.booked_ms),
                _cell(line.attributed_by),
                line.kind,
                _cell(line.entry_id),
            )
        )
    return out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
