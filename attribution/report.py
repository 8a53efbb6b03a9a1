"""Earnings per creator and currency: clicks, orders, pending, approved, reversed. Read from the daily
rollup (`commissions_daily`) and the clicks table, never the raw ledger. Used by the API and the CLI.

Both take their day range through `day_range`, which refuses what ClickHouse would silently misread (a
day outside its Date range reads as 1970), and both refuse a sum that may have wrapped past Int64
(`SumOutOfRange`) rather than show it: money.py's bounds make that need about a million maximal orders of
one creator in one currency, so it is a guard, not a limit anyone meets."""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import date

from attribution import currency as currency_table
from core import queries
from core.clickhouse import Backend
from core.links import iso_ms

# ClickHouse 18.16's toDate() reads 1970-01-01..2105-12-31; any day outside reads as 0000-00-00 (1970).
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2105, 12, 31)
# Exactly YYYY-MM-DD in ASCII digits (date.fromisoformat alone also takes 20260101 and week dates).
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A report sum is trusted only while the sum of the absolute amounts behind it (Float64, so it cannot
# wrap) stays below this: half of Int64's range leaves room for the float's rounding. What it cannot see
# is one rollup row that wrapped by itself (one creator, merchant, currency, day, kind and status past
# Int64: about a million maximal orders in a day).
SAFE_SUM_MINOR = 2**62


class BadRange(ValueError):
    """A `from`/`to` that is not a day ClickHouse can read, or a reversed range; the message says why."""


class SumOutOfRange(RuntimeError):
    """A sum too large for ClickHouse's Int64 to have added exactly."""


def parse_day(value: str, name: str) -> date:
    if not _DAY_RE.fullmatch(value):
        raise BadRange(f"{name}={value!r} is not a date (YYYY-MM-DD)")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadRange(f"{name}={value!r} is not a calendar date") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadRange(f"{name}={value!r} is outside {FIRST_DAY}..{LAST_DAY}")
    return day


def day_range(start: str | None, end: str | None, today: date) -> tuple[date, date]:
    """The inclusive range of `from`/`to` (empty or None: from the first day, to `today`)."""
    first = parse_day(start, "from") if start else FIRST_DAY
    last = parse_day(end, "to") if end else min(today, LAST_DAY)
    if last < first:
        raise BadRange(f"to ({last}) is before from ({first})")
    return first, last


@dataclass(frozen=True, slots=True)
class Earnings:
    creator_id: str
    currency: str  # '' for a creator with clicks but no commission in the range
    clicks: int
    orders: int
    pending_minor: int
    approved_minor: int
    reversed_minor: int
    # Balances of the statuses payouts and review add (the ledger's `status`, grouped generically).
    review_minor: int = 0
    in_payout_minor: int = 0
    paid_minor: int = 0
    other_statuses: dict[str, int] = field(default_factory=dict)  # any status not named above

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update({f"{status}_minor": amount for status, amount in out.pop("other_statuses").items()})
        return out


def collect(backend: Backend, start: date, end: date, creator_id: str = "") -> list[Earnings]:
    """Synchronous: the CLI calls it directly, the API through `earnings()`."""
    clicks = queries.earnings_clicks(backend, start, end, creator_id)
    out = []
    seen = set()
    for creator, currency, orders, pending, approved, reversed_, gross in queries.earnings_commissions(
        backend, start, end, creator_id
    ):
        if float(gross) >= SAFE_SUM_MINOR:
            raise SumOutOfRange(
                f"the {currency} amounts of creator {creator!r} in {start}..{end} add up past what "
                "ClickHouse's Int64 sums exactly; the ledger rows are intact, narrow the range"
            )
        seen.add(creator)
        out.append(
            Earnings(
                creator,
                currency,
                clicks.get(creator, 0),
                int(orders),
                int(pending),
                int(approved),
                int(reversed_),
            )
        )
    out = _with_statuses(out, queries.earnings_by_status(backend, start, end, creator_id))
    for creator, n in clicks.items():
        if creator not in seen:
            out.append(Earnings(creator, "", n, 0, 0, 0, 0))
    out.sort(key=lambda e: (e.creator_id, e.currency))
    return out


_NAMED_STATUSES = {"pending", "approved", "review", "in_payout", "paid"}


def _with_statuses(rows: list[Earnings], by_status: list[tuple]) -> list[Earnings]:
    """Each row with its balance per ledger status (pending and approved are already there)."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    for creator, currency, status, amount in by_status:
        found.setdefault((creator, currency), {})[status] = amount
    out = []
    for row in rows:
        statuses = found.get((row.creator_id, row.currency), {})
        other = {s: a for s, a in sorted(statuses.items()) if s not in _NAMED_STATUSES and s}
        out.append(
            replace(
                row,
                review_minor=statuses.get("review", 0),
                in_payout_minor=statuses.get("in_payout", 0),
                paid_minor=statuses.get("paid", 0),
                other_statuses=other,
            )
        )
    return out


async def earnings(backend: Backend, start: date, end: date, creator_id: str = "") -> list[Earnings]:
    return await asyncio.to_thread(collect, backend, start, end, creator_id)


def merchant_sales(backend: Backend, merchant_id: str, start: date, end: date, limit: int) -> list[dict]:
    """A merchant's creators ranked by sales (orders credited, then net commission) per currency over a
    day range, from the ledger's daily rollup: the dashboard's ranking and GET
    /api/merchants/{id}/creators. A sum Int64 may have wrapped is refused (SumOutOfRange), never shown."""
    out = []
    for creator, currency, orders, net, gross in queries.merchant_creators(
        backend, merchant_id, start, end, limit
    ):
        if float(gross) >= SAFE_SUM_MINOR:
            raise SumOutOfRange(
                f"the {currency} amounts of creator {creator!r} in {start}..{end} add up past what "
                "ClickHouse's Int64 sums exactly; the ledger rows are intact, narrow the range"
            )
        out.append({"creator_id": creator, "currency": currency, "orders": orders, "net_minor": net})
    return out


def merchant_orders(backend: Backend, merchant_id: str, limit: int) -> list[dict]:
    """A merchant's latest orders (any accepted event, credited or not), newest first, each with its
    ledger's net per creator, currency and status: the dashboard's orders page and GET
    /api/merchants/{id}/orders. Why an order earned what it did is its trace (trace.py)."""
    latest = queries.merchant_orders(backend, merchant_id, limit)
    ledger = queries.order_commissions(backend, merchant_id, [order_id for order_id, _, _ in latest])
    return [
        {
            "order_id": order_id,
            "events": events,
            "last_event_at": iso_ms(last_ms),
            "commissions": [
                {"creator_id": c, "currency": cu, "status": st, "amount_minor": amount}
                for c, cu, st, amount in ledger.get(order_id, [])
            ],
        }
        for order_id, events, last_ms in latest
    ]


def major_units(minor: int, currency: str) -> str:
    """Minor units shown in major units with the currency's ISO 4217 digits (JPY 0, EUR 2, BHD 3); a code
    the table does not know is shown with two."""
    try:
        digits = currency_table.exponent(currency)
    except KeyError:
        digits = 2
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**digits)
    return f"{sign}{whole:,}" + (f".{fraction:0{digits}d}" if digits else "")


def table(rows: list[Earnings]) -> str:
    """A plain-text table; amounts in major units (the currency's ISO 4217 digits)."""
    header = (
        "creator",
        "currency",
        "clicks",
        "orders",
        "pending",
        "approved",
        "reversed",
        "in_payout",
        "paid",
    )
    body = [
        (
            r.creator_id,
            r.currency or "-",
            f"{r.clicks:,}",
            f"{r.orders:,}",
            major_units(r.pending_minor, r.currency),
            major_units(r.approved_minor, r.currency),
            major_units(r.reversed_minor, r.currency),
            major_units(r.in_payout_minor, r.currency),
            major_units(r.paid_minor, r.currency),
        )
        for r in rows
    ]
    return render(header, body, text_columns=2, empty="(no earnings in this range)")


def render(header: tuple[str, ...], body: list[tuple[str, ...]], text_columns: int, empty: str) -> str:
    """Columns padded to width: the first `text_columns` left-aligned, the numbers after them right."""
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in body)]
    if not body:
        lines.append(empty)
    return "\n".join(lines)
