"""The `clicktrail` command line. Every command builds the settings once and passes them down."""

from __future__ import annotations

import sys

import click

from core.settings import Settings


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """clicktrail: click redirects and creator attribution."""
    ctx.obj = Settings.load()


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Create or upgrade the ClickHouse schema (safe to run again)."""
    from core.clickhouse import NativeClickHouse
    from core.migrate import migrate as run_migrations

    backend = NativeClickHouse(settings.clickhouse_url)
    try:
        ran = run_migrations(backend, log=click.echo)
    finally:
        backend.close()
    click.echo(f"schema up to date ({len(ran)} applied)")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256))
@click.pass_obj
def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve redirects, the management API and webhooks."""
    from redirector.server import serve as run_server

    sys.exit(run_server(settings, host=host, port=port, workers=workers))


@main.command()
@click.option("--once", is_flag=True, help="Drain what the streams hold now, then exit (tests, cron).")
@click.option("--consumer", default=None, help="Consumer name, unique among live ingesters [host-pid].")
@click.option("--metrics-port", default=0, type=int, help="Serve Prometheus metrics on this port (0: off).")
@click.pass_obj
def ingest(settings: Settings, once: bool, consumer: str | None, metrics_port: int) -> None:
    """Move recorded clicks, link events and order events from Redis into ClickHouse, exactly once."""
    import os
    import socket

    from prometheus_client import CollectorRegistry, start_http_server

    from redirector.ingest.process import run_streams, stream_specs

    registry = CollectorRegistry()
    if metrics_port:
        start_http_server(metrics_port, registry=registry)
    specs = stream_specs(settings)
    # The order-events stream (attribution's), drained the same way.
    from attribution.events import order_stream_spec
    from core.keys import Keys

    specs.append(order_stream_spec(Keys(settings.redis_prefix)))
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    sys.exit(run_streams(settings, specs, consumer=name, registry=registry, once=once))


@main.command()
@click.option(
    "--every",
    "every_s",
    type=click.FloatRange(min=1),
    default=None,
    help="Run a batch every SECONDS until SIGTERM/SIGINT (default: one batch, then exit).",
)
@click.option(
    "--metrics-port",
    default=0,
    type=int,
    help="Serve the attributor's run metrics (kept in Redis) on this port (0: off; the server exports them).",
)
@click.pass_obj
def attribute(settings: Settings, every_s: float | None, metrics_port: int) -> None:
    """Book commissions for new order events (one batch, or one every SECONDS)."""
    import asyncio

    from attribution.commands import attribute as run_attribute

    sys.exit(asyncio.run(run_attribute(settings, every_s, metrics_port)))


@main.group()
def report() -> None:
    """Human-readable reports."""


@report.command("earnings")
@click.option("--from", "start", default=None, help="First day (YYYY-MM-DD) [all time].")
@click.option("--to", "end", default=None, help="Last day (YYYY-MM-DD) [today].")
@click.option("--creator", "creator_id", default="", help="Only this creator.")
@click.pass_obj
def report_earnings(settings: Settings, start: str | None, end: str | None, creator_id: str) -> None:
    """Earnings per creator and currency: clicks, orders, pending, approved, reversed."""
    from attribution.commands import earnings

    sys.exit(earnings(settings, start, end, creator_id))


@report.command("links")
@click.option("--merchant", "merchant_id", required=True, help="The merchant whose links to rank.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3660), help="Look back.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def report_links(settings: Settings, merchant_id: str, days: int, limit: int) -> None:
    """A merchant's top links by human clicks (from the daily rollup, never raw clicks)."""
    from datetime import UTC, datetime, timedelta

    from attribution.report import render
    from core import queries
    from core.clickhouse import NativeClickHouse

    last = datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    backend = NativeClickHouse(settings.clickhouse_url)
    try:
        click.echo(f"reading top links of {merchant_id} {first} .. {last} from ClickHouse...", err=True)
        rows = queries.merchant_top_links(backend, merchant_id, first, last, limit)
    finally:
        backend.close()
    body = [(r["code"], r["creator_id"], f"{r['human_clicks']:,}", f"{r['unique']:,}") for r in rows]
    header = ("code", "creator", "human clicks", "unique")
    click.echo(render(header, body, text_columns=2, empty="(no clicks in this range)"))


if __name__ == "__main__":
    main()
