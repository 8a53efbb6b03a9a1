"""What the attributor knows of an order's click: the click ids' MAC checked, then one query over the
days their embedded times name (`click_span`), the destination hosts' owners, and for review rules and the
trace the link code and the human clicks from the click's IP hash on its creator's links for the same
merchant in its hour."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import msgspec

from attribution import review, rules
from attribution.merchants import MerchantStore
from core import clickid, queries
from core.clickhouse import Backend

# The click id's embedded time and the stored click time come from the same clock reading; allow skew.
CLICK_TIME_SLACK_MS = 5_000


def click_span(ts_by_id: dict[str, int]) -> tuple[list[str], list[int], int, int]:
    """The ids and the window of stored times each may have (its embedded time, give or take the slack),
    as the click queries take them: they read only the days of the windows' ends."""
    bounds_s = set()
    for ts_ms in ts_by_id.values():
        bounds_s.add((ts_ms - CLICK_TIME_SLACK_MS) // 1000)
        bounds_s.add((ts_ms + CLICK_TIME_SLACK_MS) // 1000 + 1)
    return sorted(ts_by_id), sorted(bounds_s), min(bounds_s), max(bounds_s)


class ClickLookup:
    def __init__(self, backend: Backend, ids: clickid.ClickIds, merchants: MerchantStore) -> None:
        self._backend = backend
        self._ids = ids
        self._merchants = merchants

    async def facts(self, click_ids: set[str], details: bool = False) -> dict[str, rules.ClickFacts]:
        """What is known of each click id; with `details`, also its link code and the human clicks from
        its IP hash on its creator's links in its hour (review rules and the trace need them)."""
        facts: dict[str, rules.ClickFacts] = {}
        lookup: dict[str, int] = {}
        for click_id in click_ids:
            ts_ms = clickid.timestamp_ms(click_id)
            if ts_ms is None or not self._ids.verify(click_id):
                # Never query for an id we did not mint: its embedded time is not to be trusted.
                facts[click_id] = rules.ClickFacts(click_id, ts_ms is not None, False)
            else:
                lookup[click_id] = ts_ms
        if not lookup:
            return facts
        span = click_span(lookup)
        rows = await asyncio.to_thread(queries.clicks_by_id, self._backend, *span)
        found = {r[0]: r for r in rows}
        owners = await self._merchants.owner_timelines(sorted({r[4] for r in found.values() if not r[3]}))
        for click_id in lookup:
            row = found.get(click_id)
            if row is None:
                facts[click_id] = rules.ClickFacts(click_id, True, True, found=False)
                continue
            _, ts_ms, creator_id, merchant_id, dest_host, is_bot, is_head = row
            facts[click_id] = rules.ClickFacts(
                click_id,
                True,
                True,
                found=True,
                ts_ms=ts_ms,
                creator_id=creator_id,
                merchant_id=merchant_id,
                dest_host=dest_host,
                host_owner=owners[dest_host][0] if dest_host in owners else "",
                host_owners=owners[dest_host][1] if dest_host in owners else (),
                is_bot=bool(is_bot),
                is_head=bool(is_head),
            )
        if details and found:
            facts.update(await self._details(facts, span))
        return facts

    async def _details(self, facts: dict[str, rules.ClickFacts], span: tuple) -> dict:
        extra = await asyncio.to_thread(queries.click_details, self._backend, *span)
        ip_of = {click_id: ip_hash for click_id, _, ip_hash in extra}
        hour_of = {c: facts[c].ts_ms // review.HOUR_MS for c in ip_of}
        counts = await asyncio.to_thread(
            queries.human_clicks_per_ip_hour,
            self._backend,
            sorted({facts[c].creator_id for c in ip_of}),
            sorted(set(ip_of.values())),
            sorted(set(hour_of.values())),
        )
        # Counted for the merchant each click counts for (rules.is_merchants): a creator's clicks on other
        # merchants' links are neither this merchant's to judge nor to be shown in its trace. Each click
        # keeps its hour's groups, summed per merchant recorded for and per host timeline for clicks
        # recorded for nobody (helper-74: one group per host was 2 ms an order for 5,000 hosts), so that
        # rules.as_of counts them again for the owners when an order came; here, for the owners now.
        timelines = await self._merchants.owner_timelines(sorted({host for (*_, host) in counts if host}))
        groups: dict[tuple[str, int, int], dict[tuple[str, tuple], int]] = defaultdict(
            lambda: defaultdict(int)
        )
        for (creator_id, ip_hash, hour, merchant_id, host), count in counts.items():
            timeline = () if merchant_id else timelines.get(host, ("", ()))[1]
            groups[creator_id, ip_hash, hour][merchant_id, timeline] += count
        detailed = {}
        for click_id, code, ip_hash in extra:
            click = facts[click_id]
            summed = groups.get((click.creator_id, ip_hash, hour_of[click_id]), {})
            hour_groups = tuple(
                (merchant_id, timeline, count) for (merchant_id, timeline), count in summed.items()
            )
            counted_for = click.merchant_id or click.host_owner
            detailed[click_id] = msgspec.structs.replace(
                click,
                code=code,
                ip_hour_clicks=rules.ip_hour_count(hour_groups, counted_for, None),
                ip_hour_groups=hour_groups,
            )
        return detailed

    async def is_creators(self, merchant_id: str, creator_id: str, click_id: str) -> bool:
        """Whether `click_id` is a stored click of `creator_id` on this merchant's links: one read of that
        creator's clicks in the click's days (the facts scan the whole days). False for an id we did not
        mint (never found by `facts` either)."""
        ts_ms = clickid.timestamp_ms(click_id)
        if ts_ms is None or not self._ids.verify(click_id):
            return False
        span = click_span({click_id: ts_ms})
        return await asyncio.to_thread(
            queries.is_creators_click, self._backend, merchant_id, creator_id, *span
        )
