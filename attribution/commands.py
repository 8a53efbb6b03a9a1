"""The bodies of `clicktrail attribute` and `clicktrail report earnings` (clicktrail/cli.py only parses
options). Both stop cleanly on SIGTERM/SIGINT: a batch in progress ends after the chunk in hand (its rows
inserted, the cursor left where it was), so nothing is half-booked and the next run picks up the rest."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import click
import orjson
from prometheus_client import CollectorRegistry, start_http_server
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from attribution import report, runstats, trace
from attribution.attributor import Attributor, Busy
from attribution.booking import Summary
from attribution.lanes import Lanes
from attribution.outbox import Outbox
from core.clickhouse import ClickHouseError, PartsInDoubt
from core.clickid import ClickIds
from core.cluster import connect
from core.keys import Keys
from core.redisclient import failover_client, sync_client
from core.settings import Settings

log = logging.getLogger("clicktrail.attribute")
# A scrape of `attribute --metrics-port` gives up on Redis after this (and shows the last reading).
STATS_READ_TIMEOUT_S = 2.0


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        click.echo(f"\rattributing: {done:,}/{total:,} orders", nl=False, err=True)


async def attribute(settings: Settings, every_s: float | None, metrics_port: int = 0) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    redis = failover_client(settings, role="attribute")
    backend = connect(settings)
    keys = Keys.of(settings)
    lanes = None
    if settings.attribution_workers > 1:
        lanes = Lanes(functools.partial(lane_attributor, settings), settings.attribution_workers)
    stats_redis = None
    status = 0
    try:
        if lanes is not None:
            await asyncio.to_thread(lanes.start)
        attributor = _attributor(settings, redis, backend, lanes)
        stats_redis = _serve_metrics(settings, keys, metrics_port) if metrics_port else None
        while not stop.is_set():
            started = time.monotonic()
            status = await _run_recorded(attributor, redis, keys, stop, every_s)
            if every_s is None:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, every_s - (time.monotonic() - started)))
    finally:
        if lanes is not None:
            await asyncio.to_thread(lanes.close)
        await redis.aclose()
        backend.close()
        if stats_redis is not None:
            stats_redis.close()
    return status


def _attributor(settings: Settings, redis: Redis, backend, lanes: Lanes | None = None) -> Attributor:
    keys = Keys.of(settings)
    return Attributor(
        redis,
        keys,
        backend,
        ClickIds(settings.secret_bytes),
        min_replicas_acked=settings.redis_min_replicas_acked,
        outbox=Outbox(redis, keys, settings.events_retention_days),
        lanes=lanes,
    )


@contextlib.asynccontextmanager
async def lane_attributor(settings: Settings) -> AsyncIterator[Attributor]:
    """The attributor of a lane's worker process (attribution/lanes.py), over connections of its own."""
    redis = failover_client(settings, role="attribute")
    backend = connect(settings)
    try:
        yield _attributor(settings, redis, backend)
    finally:
        await redis.aclose()
        backend.close()


async def explain(settings: Settings, merchant_id: str, order_id: str, as_json: bool) -> int:
    """`clicktrail attribute --explain`: the order's trace (attribution/trace.py); books nothing."""
    redis = failover_client(settings, role="explain")
    backend = connect(settings)
    try:
        attributor = Attributor(redis, Keys.of(settings), backend, ClickIds(settings.secret_bytes))
        found = await attributor.explain(merchant_id, order_id)
    except ClickHouseError as exc:
        raise click.ClickException(f"ClickHouse cannot be reached: {exc}") from None
    finally:
        await redis.aclose()
        backend.close()
    if found is None:
        raise click.ClickException(f"no order {order_id!r} of merchant {merchant_id!r}")
    body = found.trace
    click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() if as_json else trace.text(body))
    return 0


async def _run_recorded(
    attributor: Attributor, redis: Redis, keys: Keys, stop: asyncio.Event, every_s: float | None
) -> int:
    """One batch, its outcome printed and added to the run statistics (runstats.py). A failed run is
    recorded too, then its error goes on up."""
    started_ms, started = int(time.time() * 1000), time.monotonic()

    async def recorded(result: str, summary: Summary | None = None) -> None:
        outcomes = dict(summary.outcomes) if summary else {}
        if summary and summary.skipped_unknown_merchant:
            outcomes[runstats.UNKNOWN_MERCHANT] = summary.skipped_unknown_merchant
        try:
            await runstats.record(
                redis,
                keys,
                result,
                started_ms=started_ms,
                duration_s=time.monotonic() - started,
                outcomes=outcomes,
                kinds=summary.kinds if summary else None,
            )
        except RedisError as exc:  # the run itself is done: its statistics are not worth failing it
            log.warning("cannot record attributor run statistics: %s", exc)

    try:
        summary = await attributor.run_once(progress=_progress, stop=stop)
    except Busy as exc:
        await recorded("busy")
        click.echo(f"skipped: {exc}", err=True)
        return 0 if every_s else 75  # EX_TEMPFAIL: cron may simply try again
    except PartsInDoubt as exc:  # a cluster replica still to be put right: nothing read, nothing written
        await recorded("failed")
        click.echo(f"skipped: {exc}", err=True)
        return 0 if every_s else 75
    except Exception:
        await recorded("failed")
        raise
    await recorded("stopped" if summary.stopped else "ok", summary)
    if sys.stderr.isatty():
        click.echo("", err=True)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "none"
    click.echo(
        f"attributed {summary.orders} orders ({outcomes}); appended {summary.rows} ledger rows, "
        f"net {summary.amount_minor} minor units; {summary.events} events emitted; "
        f"unknown merchant {summary.skipped_unknown_merchant}"
    )
    if summary.staged_dead_lettered:
        click.echo(
            f"{summary.staged_dead_lettered} staged events did not decode: moved to the event dead letters",
            err=True,
        )
    return 0


def _serve_metrics(settings: Settings, keys: Keys, port: int) -> SyncRedis:
    """Serve the run statistics on `port` (a thread of prometheus_client's): each scrape reads the hash."""
    client = sync_client(settings, timeout_s=STATS_READ_TIMEOUT_S, role="attribute-metrics")
    registry = CollectorRegistry()
    last: dict = {}

    def read() -> dict:
        try:
            last.update(client.hgetall(keys.attribution_stats))
        except RedisError as exc:
            # The last reading, not zeros: counters that drop to 0 would read as resets, a last success
            # of 0 as "never run".
            log.warning("cannot read attributor run statistics: %s", exc)
        return dict(last)

    registry.register(runstats.StatsCollector(read))
    start_http_server(port, registry=registry)
    return client


def earnings(settings: Settings, start: str | None, end: str | None, creator_id: str) -> int:
    try:
        first, last = report.day_range(start, end, datetime.now(UTC).date())
    except report.BadRange as exc:
        raise click.BadParameter(str(exc)) from None
    backend = connect(settings)
    try:
        click.echo(f"reading earnings {first} .. {last} from ClickHouse...", err=True)
        rows = report.collect(backend, first, last, creator_id)
    except report.SumOutOfRange as exc:
        raise click.ClickException(str(exc)) from None
    except ClickHouseError as exc:
        raise click.ClickException(f"ClickHouse cannot be reached: {exc}") from None
    finally:
        backend.close()
    click.echo(report.table(rows))
    return 0
