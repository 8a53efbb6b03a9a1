"""The bodies of `clicktrail attribute` and `clicktrail report earnings` (clicktrail/cli.py only parses
options). Both stop cleanly on SIGTERM/SIGINT: a batch in progress ends after the chunk in hand (its rows
inserted, the cursor left where it was), so nothing is half-booked and the next run picks up the rest."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from datetime import UTC, datetime

import click
import orjson

from attribution import report, trace
from attribution.attributor import Attributor, Busy
from attribution.outbox import Outbox
from core.clickhouse import ClickHouseError
from core.clickid import ClickIds
from core.cluster import connect
from core.keys import Keys
from core.redisclient import failover_client
from core.settings import Settings


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        click.echo(f"\rattributing: {done:,}/{total:,} orders", nl=False, err=True)


async def attribute(settings: Settings, every_s: float | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    redis = failover_client(settings)
    backend = connect(settings)
    keys = Keys.of(settings)
    outbox = Outbox(redis, keys, settings.events_retention_days)
    attributor = Attributor(
        redis,
        keys,
        backend,
        ClickIds(settings.secret_bytes),
        min_replicas_acked=settings.redis_min_replicas_acked,
        outbox=outbox,
    )
    status = 0
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                summary = await attributor.run_once(progress=_progress, stop=stop)
            except Busy as exc:
                click.echo(f"skipped: {exc}", err=True)
                status = 0 if every_s else 75  # EX_TEMPFAIL: cron may simply try again
            else:
                if sys.stderr.isatty():
                    click.echo("", err=True)
                outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "none"
                click.echo(
                    f"attributed {summary.orders} orders ({outcomes}); appended {summary.rows} ledger rows, "
                    f"net {summary.amount_minor} minor units; {summary.events} events emitted; "
                    f"unknown merchant {summary.skipped_unknown_merchant}"
                )
            if every_s is None:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, every_s - (time.monotonic() - started)))
    finally:
        await redis.aclose()
        backend.close()
    return status


async def explain(settings: Settings, merchant_id: str, order_id: str, as_json: bool) -> int:
    """`clicktrail attribute --explain`: the order's trace (attribution/trace.py); books nothing."""
    redis = failover_client(settings)
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
