"""The attributor's outcomes as Prometheus metrics.

The attributor is a batch job: a one-shot run from cron ends before any scrape could reach it. So every
run, one-shot or `--every`, adds its outcome to one Redis hash (`Keys.attribution_stats`): cumulative
counters (runs by result, orders by outcome, ledger rows by kind, seconds spent) and the times of the last
run and the last successful one. Whatever exports the hash reads it: the server's /metrics (refreshed in
the background, so a scrape never waits on Redis) and, for a deployment without a server to scrape,
`clicktrail attribute --every S --metrics-port P`. The counters only grow, as Prometheus counters must,
and survive restarts of every process (they reset only with Redis itself, which Prometheus's rate()
treats as a counter reset).

Hash fields: `runs:<result>`, `orders:<outcome>`, `rows:<kind>`, `dead:<reason>` (integers), `seconds`
(float), `last_run_ms`, `last_success_ms`, `last_duration_ms`. `dead:` is added by the outbox itself, in
the transaction that dead-letters (a run that fails afterwards still counts them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.asyncio import Redis

from attribution.outbox import STAGED_UNDECODABLE
from core.keys import Keys

# How a run ended. "stopped": a stop request ended it early (its booked rows stay, the cursor did not move).
RESULTS = ("ok", "stopped", "busy", "failed")
# The outcome of orders skipped because their merchant is unknown (not among the ledger's reasons).
UNKNOWN_MERCHANT = "unknown_merchant"
# How often the server re-reads the hash for its /metrics (one HGETALL).
STATS_REFRESH_INTERVAL_S = 5.0


def increments(
    result: str,
    outcomes: Mapping[str, int],
    kinds: Mapping[str, int],
) -> dict[str, int]:
    """The integer counters one run adds to the hash (pure: the fields and their increments)."""
    if result not in RESULTS:
        raise ValueError(f"unknown run result {result!r}")
    added = {f"runs:{result}": 1}
    added.update({f"orders:{k}": int(n) for k, n in outcomes.items() if n})
    added.update({f"rows:{k}": int(n) for k, n in kinds.items() if n})
    return added


async def record(
    redis: Redis,
    keys: Keys,
    result: str,
    *,
    started_ms: int,
    duration_s: float,
    outcomes: Mapping[str, int] | None = None,
    kinds: Mapping[str, int] | None = None,
) -> None:
    """Add one run to the hash, all fields in one MULTI (a scrape never sees half a run)."""
    key = keys.attribution_stats
    ended_ms = started_ms + round(duration_s * 1000)
    async with redis.pipeline(transaction=True) as pipe:
        for name, n in increments(result, outcomes or {}, kinds or {}).items():
            pipe.hincrby(key, name, n)
        pipe.hincrbyfloat(key, "seconds", duration_s)
        last = {"last_run_ms": ended_ms, "last_duration_ms": round(duration_s * 1000)}
        if result in ("ok", "stopped"):
            last["last_success_ms"] = ended_ms
        pipe.hset(key, mapping=last)
        await pipe.execute()


def families(stats: Mapping[bytes | str, bytes | str]) -> Iterator[Metric]:
    """The metric families of one reading of the hash (pure). Every family is present even before the first
    run (zero, and a last success at 0: "never", which the staleness alert sees as very old)."""
    fields = {_text(k): _text(v) for k, v in stats.items()}
    runs = CounterMetricFamily(
        "clicktrail_attributor_runs",
        "Attributor runs by result (ok, stopped, busy, failed)",
        labels=["result"],
    )
    for result in RESULTS:
        runs.add_metric([result], _number(fields.get(f"runs:{result}")))
    yield runs
    orders = CounterMetricFamily(
        "clicktrail_attributor_orders",
        "Orders attributed by outcome: credited, parked (no order.created yet), unknown_merchant, or the "
        "reason an order earns nothing (no_click, bot, expired, ...)",
        labels=["outcome"],
    )
    for outcome, n in _prefixed(fields, "orders:"):
        orders.add_metric([outcome], n)
    yield orders
    rows = CounterMetricFamily(
        "clicktrail_attributor_ledger_rows", "Ledger rows appended by kind", labels=["kind"]
    )
    for kind, n in _prefixed(fields, "rows:"):
        rows.add_metric([kind], n)
    yield rows
    dead = CounterMetricFamily(
        "clicktrail_attributor_dead_letters",
        "Staged commission events of an earlier run that did not decode, moved to the event dead letters",
        labels=["reason"],
    )
    # Exported at 0 before the first: a series that appears at N shows no increase, and the alert on it
    # would miss the first dead letter, the one that says a release staged what this one cannot read.
    dead_by_reason = {STAGED_UNDECODABLE: 0, **dict(_prefixed(fields, "dead:"))}
    for reason, n in dead_by_reason.items():
        dead.add_metric([reason], n)
    yield dead
    yield CounterMetricFamily(
        "clicktrail_attributor_run_seconds",
        "Time spent in attributor runs",
        value=_number(fields.get("seconds")),
    )
    yield GaugeMetricFamily(
        "clicktrail_attributor_last_run_duration_seconds",
        "Duration of the last attributor run",
        value=_number(fields.get("last_duration_ms")) / 1000,
    )
    yield GaugeMetricFamily(
        "clicktrail_attributor_last_run_timestamp_seconds",
        "End of the last attributor run, any result (Unix time; 0: never)",
        value=_number(fields.get("last_run_ms")) / 1000,
    )
    yield GaugeMetricFamily(
        "clicktrail_attributor_last_success_timestamp_seconds",
        "End of the last attributor run that completed or stopped cleanly (Unix time; 0: never)",
        value=_number(fields.get("last_success_ms")) / 1000,
    )


class StatsCollector:
    """A prometheus_client collector over `read()`, which returns the hash as last read (or reads it)."""

    def __init__(self, read: Callable[[], Mapping]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        yield from families(self._read())


def _prefixed(fields: dict[str, str], prefix: str) -> list[tuple[str, float]]:
    return sorted((k[len(prefix) :], _number(v)) for k, v in fields.items() if k.startswith(prefix))


def _number(value: str | None) -> float:
    try:
        return float(value) if value is not None else 0.0
    except ValueError:  # a hand-edited field: shown as 0 rather than failing the whole scrape
        return 0.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
