"""A creator's audience over a day range: clicks per day (human and bot) and where the human clicks came
from (top countries and device classes). Read from the click rollups (`creator_clicks_daily`,
`clicks_daily_dims`), never raw clicks. The JSON API (`GET /api/creators/{id}/clicks`) and the dashboard
both call `audience()`: one source for both."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import date, timedelta

from core import queries
from core.clickhouse import Backend

TOP_ROWS = 10  # countries or devices shown; the rest are summed as "other"
OTHER = "other"
UNKNOWN = "unknown"  # a click whose country or device the ingester could not tell ('' in the rollup)
MAX_DAYS = 366  # a longer series is refused by the callers (a chart of more days is unreadable)
DEFAULT_DAYS = 30
# Links whose clicks make the top countries and devices: the creator's newest this many. The breakdown
# rollup is keyed by link, so each request reads the creator's codes and sends them to ClickHouse; the cap
# bounds that work (one ZREVRANGE slice, one or two queries) however many links a creator has. The daily
# series comes from the per-creator rollup and always counts every link.
MAX_BREAKDOWN_LINKS = 10_000


@dataclass(frozen=True, slots=True)
class Audience:
    creator_id: str
    first: date
    last: date
    days: list[tuple[str, int, int]]  # (day, human, bots) for every day of the range, zeros included
    countries: list[tuple[str, int]]  # human clicks, most first, at most TOP_ROWS + "other"
    devices: list[tuple[str, int]]

    @property
    def human(self) -> int:
        return sum(h for _, h, _ in self.days)

    @property
    def bots(self) -> int:
        return sum(b for _, _, b in self.days)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(first=str(self.first), last=str(self.last), human=self.human, bots=self.bots)
        out["days"] = [{"day": d, "human": h, "bots": b} for d, h, b in self.days]
        for name in ("countries", "devices"):
            out[name] = [{"name": n, "human": c} for n, c in out[name]]
        return out


def every_day(rows: list[tuple[str, int, int]], first: date, last: date) -> list[tuple[str, int, int]]:
    """The series with a zero row for each day without clicks (a chart must not join distant days)."""
    found = {day: (human, bots) for day, human, bots in rows}
    out = []
    day = first
    while day <= last:
        human, bots = found.get(day.isoformat(), (0, 0))
        out.append((day.isoformat(), human, bots))
        day += timedelta(days=1)
    return out


def top(counts: dict[str, int], limit: int = TOP_ROWS) -> list[tuple[str, int]]:
    """The largest `limit` values, most first (ties by name), the rest summed as "other"; zeros and
    negatives (a rollup row not merged yet can be) left out."""
    merged: dict[str, int] = {}
    for name, n in counts.items():
        if n > 0:
            merged[name or UNKNOWN] = merged.get(name or UNKNOWN, 0) + n  # '' and "unknown" are one row
    ranked = sorted(merged.items(), key=lambda x: (-x[1], x[0]))
    rest = sum(n for _, n in ranked[limit:])
    return ranked[:limit] + ([(OTHER, rest)] if rest else [])


def collect(backend: Backend, creator_id: str, codes: list[str], first: date, last: date) -> Audience:
    days = every_day(queries.creator_daily(backend, creator_id, first, last), first, last)
    countries = queries.links_breakdown(backend, codes, "country", first, last)
    devices = queries.links_breakdown(backend, codes, "device", first, last)
    return Audience(creator_id, first, last, days, top(countries), top(devices))


async def audience(backend: Backend, creator_id: str, codes: list[str], first: date, last: date) -> Audience:
    return await asyncio.to_thread(collect, backend, creator_id, codes, first, last)


def merchant_days(backend: Backend, merchant_id: str, first: date, last: date) -> list[tuple[str, int, int]]:
    """(day, human, bots) of the clicks on a merchant's links for every day of the range, from the rollup
    sorted by merchant: the merchant's dashboard overview and GET /api/merchants/{id}/clicks."""
    return every_day(queries.merchant_daily(backend, merchant_id, first, last), first, last)
