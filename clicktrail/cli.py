"""The `clicktrail` command line. Every command builds the settings once and passes them down."""

from __future__ import annotations

import sys

import click

from clicktrail.settings import Settings


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """clicktrail: click redirects and creator attribution."""
    ctx.obj = Settings.load()


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Create or upgrade the ClickHouse schema (safe to run again)."""
    from clicktrail.clickhouse import NativeClickHouse
    from clicktrail.migrate import migrate as run_migrations

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


if __name__ == "__main__":
    main()
