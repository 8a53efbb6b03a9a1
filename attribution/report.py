"""Earnings per creator and currency: clicks, orders, pending, approved, reversed. Read from the daily
rollup (`commissions_daily`) and the clicks table, never the raw ledger. Used by the API and the CLI."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import date

from attribution import queries
from clicktrail.clickhouse import Backend


@dataclass(frozen=True, slots=True)
class Earnings:
    creator_id: str
    currency: str  # '' for a creator with clicks but no commission in the range
    clicks: int
    orders: int
    pending_minor: int
    approved_minor: int
    reversed_minor: int

    def as_dict(self) -> dict:
        return asdict(self)


def collect(backend: Backend, start: date, end: date, creator_id: str = "") -> list[Earnings]:
    """Synchronous: the CLI calls it directly, the API through `earnings()`."""
    params = {"from_day": str(start), "to_day": str(end), "creator_id": creator_id}
    db = backend.database
    clicks = {c: int(n) for c, n in backend.execute(queries.earnings_clicks(db), params)}
    out = []
    seen = set()
    for creator, currency, orders, pending, approved, reversed_ in backend.execute(
        queries.earnings_commissions(db), params
    ):
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
    for creator, n in clicks.items():
        if creator not in seen:
            out.append(Earnings(creator, "", n, 0, 0, 0, 0))
    out.sort(key=lambda e: (e.creator_id, e.currency))
    return out


async def earnings(backend: Backend, start: date, end: date, creator_id: str = "") -> list[Earnings]:
    return await asyncio.to_thread(collect, backend, start, end, creator_id)


# ISO 4217 currencies without minor units; every other is shown with two decimals (3-decimal currencies
# such as BHD are rare among our merchants and would show a factor 10 off: the API gives minor units).
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)


def _money(minor: int, currency: str) -> str:
    if currency in ZERO_DECIMAL_CURRENCIES:
        return f"{minor:,}"
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def table(rows: list[Earnings]) -> str:
    """A plain-text table; amounts shown with two decimals (minor units / 100)."""
    header = ("creator", "currency", "clicks", "orders", "pending", "approved", "reversed")
    body = [
        (
            r.creator_id,
            r.currency or "-",
            f"{r.clicks:,}",
            f"{r.orders:,}",
            _money(r.pending_minor, r.currency),
            _money(r.approved_minor, r.currency),
            _money(r.reversed_minor, r.currency),
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
