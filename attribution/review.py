"""Review: merchant rules that hold a suspicious accrual (status `review`) until the merchant decides.

The rules are pure functions of the click, the order time and the merchant's rules in effect at the
order's time (attribution/policy.py); 0 turns a rule off:

- `min_click_to_order_s`: an order placed sooner than this after its click (a bot checking out, or a
  click id copied into an order by the creator);
- `max_clicks_per_ip_hour`: more than this many human clicks from the click's IP hash on the same
  creator's links for this merchant in the clock hour of the click (click farms). Clicks on other
  merchants' links are not counted: they are not this merchant's to judge, and the trace shows the count.

A decision (`approve` or `reject`) is kept per order in Redis (`Keys.merchant_reviews`, the first one
wins) and folded into the order's ledger by the attributor like any event: approve transfers what is in
review to pending (then the usual lock approves it), reject reverses it (reason `rejected`).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis

from attribution.policy import ReviewRules
from attribution.rules import ClickFacts
from core.keys import Keys

RULE_MIN_CLICK_TO_ORDER = "min_click_to_order_s"
RULE_MAX_CLICKS_PER_IP_HOUR = "max_clicks_per_ip_hour"
APPROVE, REJECT = "approve", "reject"
DECISIONS = (APPROVE, REJECT)
REASON_REJECTED = "rejected"
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class RuleCheck:
    rule: str
    limit: int
    observed: int | None  # seconds from click to order, or human clicks in the hour; None: no click
    tripped: bool

    def as_dict(self) -> dict:
        return {"rule": self.rule, "limit": self.limit, "observed": self.observed, "tripped": self.tripped}


def check(rules: ReviewRules, click: ClickFacts | None, order_ms: int) -> list[RuleCheck]:
    """Every active rule against the click the order is credited through (None: no click, as for an
    order credited by a code alone: then no rule can trip)."""
    checks = []
    if rules.min_click_to_order_s:
        limit = rules.min_click_to_order_s
        if click is None or not click.found:
            checks.append(RuleCheck(RULE_MIN_CLICK_TO_ORDER, limit, None, False))
        else:
            elapsed_ms = order_ms - click.ts_ms
            checks.append(
                RuleCheck(RULE_MIN_CLICK_TO_ORDER, limit, elapsed_ms // 1000, elapsed_ms < limit * 1000)
            )
    if rules.max_clicks_per_ip_hour:
        limit = rules.max_clicks_per_ip_hour
        if click is None or not click.found:
            checks.append(RuleCheck(RULE_MAX_CLICKS_PER_IP_HOUR, limit, None, False))
        else:
            count = click.ip_hour_clicks
            checks.append(RuleCheck(RULE_MAX_CLICKS_PER_IP_HOUR, limit, count, count > limit))
    return checks


def held_reason(checks: list[RuleCheck]) -> str:
    """The first tripped rule ('' when none): what the accrual's `reason` says."""
    return next((c.rule for c in checks if c.tripped), "")


def hour_start_ms(ts_ms: int) -> int:
    return ts_ms - ts_ms % HOUR_MS


class Decision(msgspec.Struct, frozen=True):
    decision: str  # approve or reject
    decided_ms: int

    def as_dict(self) -> dict:
        return {"decision": self.decision, "decided_ms": self.decided_ms}


_decision = msgspec.json.Decoder(Decision)


class ReviewStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def decide(self, merchant_id: str, order_id: str, decision: str, now_ms: int) -> Decision:
        """Record the decision unless one exists; returns the one that stands (the first). Then marks the
        order for the next attributor run (a separate write: if it is lost, the order is still redone once
        its lock passes)."""
        key = self._keys.merchant_reviews(merchant_id)
        wanted = Decision(decision, now_ms)
        if await self._redis.hsetnx(key, order_id, msgspec.json.encode(wanted)):
            await self._redis.sadd(self._keys.attribution_revisit, f"{merchant_id} {order_id}")
            return wanted
        return await self.get(merchant_id, order_id) or wanted

    async def get(self, merchant_id: str, order_id: str) -> Decision | None:
        raw = await self._redis.hget(self._keys.merchant_reviews(merchant_id), order_id)
        return _decision.decode(raw) if raw else None

    async def many(self, merchant_id: str, order_ids: list[str]) -> dict[str, Decision]:
        if not order_ids:
            return {}
        raws = await self._redis.hmget(self._keys.merchant_reviews(merchant_id), order_ids)
        return {o: _decision.decode(r) for o, r in zip(order_ids, raws, strict=True) if r}

    async def to_revisit(self) -> list[tuple[str, str]]:
        members = await self._redis.smembers(self._keys.attribution_revisit)
        return sorted(tuple(m.decode().split(" ", 1)) for m in members)  # type: ignore[misc]

    async def revisited(self, pairs: list[tuple[str, str]]) -> None:
        if pairs:
            await self._redis.srem(self._keys.attribution_revisit, *(f"{m} {o}" for m, o in pairs))
