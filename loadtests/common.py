"""What the scenarios share: the run's mode and sizes, a load phase, and the final drain-and-count."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.load import LoadStats, drive
from loadtests.system import System
from loadtests.verdict import Verdict, check_exactly_once

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

# The steady load of the fault scenarios: paced (not flat out) so that latency compares like with like, well
# under what one worker serves on this 2-core machine, which also runs Redis, ClickHouse and the ingester.
FULL_RATE_PER_S = 1_000
SMOKE_RATE_PER_S = 300
CONNECTIONS = 32
LINKS = 20
WARMUP_S = 0.5


@dataclass(frozen=True)
class Run:
    smoke: bool
    root: Path  # this scenario's temporary directory (servers' data, logs)
    env: dict[str, str] = field(default_factory=dict)  # extra CLICKTRAIL_* settings for every process

    def system(self, root: Path | None = None, *, env: dict[str, str] | None = None, **options) -> System:
        """The scenario's system, with the run's extra settings under the scenario's own."""
        return System(root or self.root, env={**self.env, **(env or {})}, **options)

    @property
    def mode(self) -> str:
        return "smoke" if self.smoke else "full"

    def pick(self, full, smoke):
        return smoke if self.smoke else full

    @property
    def rate(self) -> int:
        return self.pick(FULL_RATE_PER_S, SMOKE_RATE_PER_S)


def run_async(coro):
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)


async def load(
    system: System,
    codes: list[str],
    seconds: float,
    run: Run,
    stats: LoadStats | None = None,
    *,
    rate: float | None = None,
    connections: int = CONNECTIONS,
    timeout_s: float = 30.0,
    warmup_s: float = 0.0,
) -> LoadStats:
    """Offer the steady load for `seconds`; with `warmup_s`, first that long untimed (connections opened,
    link caches filled) in the same stats, so that its clicks still count in the exact-count check."""
    stats = stats or LoadStats()
    offered = dict(rate_per_s=rate or run.rate, connections=connections, stats=stats, timeout_s=timeout_s)
    if warmup_s:
        await drive("127.0.0.1", system.port, codes, duration_s=warmup_s, **offered)
        stats.measure_from_s = time.monotonic() - stats.started_at
    return await drive("127.0.0.1", system.port, codes, duration_s=seconds, **offered)


def check_answers(verdict: Verdict, *phases: LoadStats) -> None:
    """Every request was answered 302 with a well-formed Location, none failed."""
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    bad = 0
    for stats in phases:
        for status, count in stats.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
        for reason, count in stats.errors.items():
            errors[reason] = errors.get(reason, 0) + count
        bad += stats.bad_locations
    others = {s: c for s, c in statuses.items() if s != 302}
    verdict.figures.update(statuses={str(k): v for k, v in statuses.items()}, client_errors=errors)
    verdict.check(
        "every request answered 302",
        not others and not errors and not bad,
        f"302: {statuses.get(302, 0)}, other statuses: {others or 0}, failed: {errors or 0}, "
        f"bad Locations: {bad}",
    )


def latency_ratio(
    verdict: Verdict,
    name: str,
    base: LoadStats,
    fault: LoadStats,
    limit: float,
    run: Run,
    since_s: float = 0.0,
    until_s: float = float("inf"),
) -> None:
    """p99 under the fault against the no-fault phase of the same run. Enforced in full runs only: a smoke
    run's few seconds on a shared 2-core machine give a p99 of a dozen samples, which is noise."""
    b, f = base.summary(), fault.summary(since_s, until_s)
    ratio = f["p99_ms"] / b["p99_ms"] if b["p99_ms"] else float("inf")
    verdict.figures.update(baseline=b, **{name: f}, p99_ratio=round(ratio, 2))
    verdict.check(
        f"p99 within {limit:g}x of the no-fault run",
        ratio <= limit,
        f"p99 {f['p99_ms']:.2f} ms vs {b['p99_ms']:.2f} ms no-fault = {ratio:.2f}x "
        f"(p50 {f['p50_ms']:.2f} vs {b['p50_ms']:.2f} ms, max {f['max_ms']:.0f} ms)",
        enforced=not run.smoke,
    )


def drain_and_count(
    verdict: Verdict, system: System, answered: list[str], timeout_s: float, *, extra_allowed: bool = False
) -> None:
    drained = system.wait_drained(timeout_s, expected=len(set(answered)))
    verdict.check(
        "spools replayed and stream drained into ClickHouse",
        drained,
        f"spool files left: {len(system.spool_files())}, stream lag: {system.click_lag()[0]}",
    )
    stored, total, distinct = system.stored_clicks()
    check_exactly_once(verdict, answered, stored, total, distinct, extra_allowed=extra_allowed)


def recorder_counts(system: System) -> dict[str, float]:
    """serve's click outcome counters (committed, spooled, replayed, lost)."""
    values = system.metrics()
    return {
        o: values.get(f'clicktrail_clicks_total{{outcome="{o}"}}', 0.0)
        for o in ("committed", "spooled", "replayed", "lost")
    }


def check_spooled(verdict: Verdict, system: System, while_what: str) -> None:
    """Clicks went to the spool during the fault and none was lost. Replayed may be fewer than spooled: a
    write that timed out but still reached Redis is recognised on replay and skipped (recorder.py)."""
    counts = recorder_counts(system)
    verdict.figures["recorder"] = counts
    verdict.check(
        f"clicks spooled {while_what}, replayed, none lost",
        counts["spooled"] > 0 and counts["replayed"] <= counts["spooled"] and counts["lost"] == 0,
        f"spooled {counts['spooled']:.0f}, replayed {counts['replayed']:.0f} "
        f"(already in Redis: {counts['spooled'] - counts['replayed']:.0f}), lost {counts['lost']:.0f}",
    )
