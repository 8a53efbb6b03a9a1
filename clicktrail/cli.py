"""The `clicktrail` command line. Every command builds the settings once and passes them down."""

from __future__ import annotations

import logging
import math
import sys

import click

from core.settings import Settings
from core.validate import is_utf8

# What a command ends with when a store cannot be reached: cron and supervisors may simply try again.
EX_TEMPFAIL = 75
# Bad settings (environment): the command cannot start.
EX_CONFIG = 78
PORT = click.IntRange(0, 65535)


class Unavailable(click.ClickException):
    exit_code = EX_TEMPFAIL


class BadSettings(click.ClickException):
    exit_code = EX_CONFIG


class _TextCommand(click.Command):
    """Every text option and argument must be UTF-8. Python reads arguments with surrogateescape: bytes
    that are not UTF-8 arrive as lone surrogates, which no UTF-8 encode takes (a query parameter, a Redis
    name, an HTTP header), and each failed with a traceback far from the argument, or (`ingest
    --consumer`) was retried for ever. A file's name (click.File, click.Path) may be any bytes: it is
    opened, never sent anywhere."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        for param in self.get_params(ctx):
            if isinstance(param.type, click.File | click.Path):
                continue
            value = ctx.params.get(param.name or "")
            for text in value if isinstance(value, tuple | list) else (value,):
                if isinstance(text, str) and not is_utf8(text):
                    raise click.BadParameter("must be UTF-8 text", ctx=ctx, param=param)
        return rest


class _Main(click.Group):
    """A store out of reach is one line and exit 75, not a traceback: an operator (or cron) sees what is
    down and that trying again may do. A store that refused the work (bad SQL, a wrong key type, an ACL)
    is one line and exit 1: trying again would not help."""

    command_class = _TextCommand
    group_class = type  # a subgroup (`webhook`) is a _Main too, its commands _TextCommands

    def invoke(self, ctx: click.Context):
        from redis.exceptions import ClusterDownError, RedisError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from core.clickhouse import ClickHouseError, PartsInDoubt

        try:
            return super().invoke(ctx)
        except (RedisConnectionError, RedisTimeoutError, ClusterDownError) as exc:
            raise Unavailable(f"Redis cannot be reached: {_first_line(exc)}") from None
        except RedisError as exc:
            raise click.ClickException(f"Redis refused: {_first_line(exc)}") from None
        except ClickHouseError as exc:
            if isinstance(exc, PartsInDoubt) or _unreachable(exc.__cause__):
                raise Unavailable(f"ClickHouse cannot be reached: {_first_line(exc)}") from None
            raise click.ClickException(f"ClickHouse refused: {_first_line(exc)}") from None


def _unreachable(cause: BaseException | None) -> bool:
    """Whether a ClickHouse error is the network's (connection, timeout), not the server's answer."""
    from clickhouse_driver.errors import NetworkError, SocketTimeoutError

    return isinstance(cause, NetworkError | SocketTimeoutError | OSError | EOFError)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


class _OneLine(logging.Filter):
    """clickhouse-driver logs each failed connection with its traceback; its one line says it all (the
    command's own error, or the service's retry, follows)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


_ONE_LINE = _OneLine()


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):  # FloatRange lets NaN through (no comparison holds)
        raise click.BadParameter("must be a finite number of seconds")
    return value


@click.group(cls=_Main)
@click.pass_context
def main(ctx: click.Context) -> None:
    """clicktrail: click redirects and creator attribution."""
    from pydantic import ValidationError

    # One instance: a logger keeps a filter once, and each command run in a process would add another.
    logging.getLogger("clickhouse_driver.connection").addFilter(_ONE_LINE)
    try:
        ctx.obj = Settings.load()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise BadSettings(f"bad CLICKTRAIL_* settings: {problems}") from None
    except OSError as exc:  # the data dir (its secret) cannot be made or read
        raise BadSettings(f"CLICKTRAIL_DATA_DIR: {exc}") from None


@main.command()
@click.option(
    "--to-cluster",
    "from_url",
    default=None,
    metavar="URL",
    help="Copy a single node's data (its clickhouse:// URL, as the cluster's nodes reach it) into the "
    "cluster that CLICKTRAIL_CLICKHOUSE_CLUSTER names (docs/cluster.md).",
)
@click.pass_obj
def migrate(settings: Settings, from_url: str | None) -> None:
    """Create or upgrade the ClickHouse schema (safe to run again)."""
    from core.cluster import connect
    from core.migrate import migrate as run_migrations

    backend = connect(settings)
    try:
        if from_url:
            _copy_to_cluster(settings, backend, from_url)
            return
        ran = run_migrations(backend, log=click.echo)
    finally:
        backend.close()
    click.echo(f"schema up to date ({len(ran)} applied)")


def _copy_to_cluster(settings: Settings, cluster: object, from_url: str) -> None:
    from urllib.parse import urlsplit

    from core.clickhouse import NativeClickHouse
    from core.clustercopy import CopyRefused, copy_to_cluster

    if not settings.clickhouse_cluster:
        raise click.UsageError("--to-cluster needs CLICKTRAIL_CLICKHOUSE_CLUSTER (and the cluster's URL)")
    parts = urlsplit(from_url)
    source = NativeClickHouse(from_url)
    try:
        copied = copy_to_cluster(source, f"{parts.hostname}:{parts.port or 9000}", cluster, log=click.echo)
    except CopyRefused as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        source.close()
    click.echo(f"copied to cluster {settings.clickhouse_cluster}: {sum(copied.values()):,} rows")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=PORT)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256))
@click.pass_obj
def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve redirects, the management API and webhooks."""
    from redirector.server import serve as run_server

    sys.exit(run_server(settings, host=host, port=port, workers=workers))


@main.command()
@click.option("--once", is_flag=True, help="Drain what the streams hold now, then exit (tests, cron).")
@click.option("--consumer", default=None, help="Consumer name, unique among live ingesters [host-pid].")
@click.option("--metrics-port", default=0, type=PORT, help="Serve Prometheus metrics on this port (0: off).")
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

    specs.append(order_stream_spec(Keys.of(settings)))
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    sys.exit(run_streams(settings, specs, consumer=name, registry=registry, once=once))


@main.command()
@click.option(
    "--every",
    "every_s",
    type=click.FloatRange(min=1),
    callback=_finite,
    default=None,
    help="Run a batch every SECONDS until SIGTERM/SIGINT (default: one batch, then exit).",
)
@click.option(
    "--explain",
    nargs=2,
    type=str,
    default=None,
    metavar="MERCHANT_ID ORDER_ID",
    help="Print why this order is (not) credited, step by step, and book nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="With --explain: the trace as JSON (the API's).")
@click.option(
    "--metrics-port",
    default=0,
    type=PORT,
    help="Serve the attributor's run metrics (kept in Redis) on this port (0: off; the server exports them).",
)
@click.pass_obj
def attribute(
    settings: Settings,
    every_s: float | None,
    explain: tuple[str, str] | None,
    as_json: bool,
    metrics_port: int,
) -> None:
    """Book commissions for new order events (one batch, or one every SECONDS)."""
    import asyncio

    if explain is not None:
        from attribution.commands import explain as run_explain

        sys.exit(asyncio.run(run_explain(settings, *explain, as_json)))
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
    from core.cluster import connect

    last = datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    backend = connect(settings)
    try:
        click.echo(f"reading top links of {merchant_id} {first} .. {last} from ClickHouse...", err=True)
        rows = queries.merchant_top_links(backend, merchant_id, first, last, limit)
    finally:
        backend.close()
    body = [(r["code"], r["creator_id"], f"{r['human_clicks']:,}", f"{r['unique']:,}") for r in rows]
    header = ("code", "creator", "human clicks", "unique")
    click.echo(render(header, body, text_columns=2, empty="(no clicks in this range)"))


@main.command()
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit (tests, cron).")
@click.option("--metrics-port", default=0, type=PORT, help="Serve Prometheus metrics on this port (0: off).")
@click.pass_obj
def deliver(settings: Settings, once: bool, metrics_port: int) -> None:
    """Send emitted events to the registered endpoints (signed, at least once, in order per endpoint)."""
    import asyncio

    from attribution.delivery import run_deliver

    sys.exit(asyncio.run(run_deliver(settings, once, metrics_port)))


@main.group()
def keys() -> None:
    """API keys (issue, list and revoke them with the API or the dashboard: docs/api.md)."""


@keys.command("reindex")
@click.pass_obj
def keys_reindex(settings: Settings) -> None:
    """Put every stored API key on its creator's or merchant's list, so that the admin can list and revoke
    it (keys issued by a release before the lists are on none; safe to run again)."""
    import asyncio

    from core.keys import Keys
    from core.redisclient import async_client
    from redirector.auth import reindex_keys

    async def run() -> int:
        client = async_client(settings, timeout_s=5.0, retries=3, role="keys")
        try:
            return await reindex_keys(client, Keys.of(settings))
        finally:
            await client.aclose()

    click.echo(f"{asyncio.run(run())} key(s) put on their creator's or merchant's list")


@main.group()
def webhook() -> None:
    """Tools for merchants integrating order webhooks."""


@webhook.command("send")
@click.option("--url", required=True, help="The clicktrail server, e.g. http://127.0.0.1:8000")
@click.option("--merchant", "merchant_id", required=True)
@click.option("--secret", required=True, help="The merchant's webhook secret (whsec_...).")
@click.option("--id", "webhook_id", default=None, help="webhook-id to send [a new random one].")
@click.argument("body_file", type=click.File("rb"))
def webhook_send(url: str, merchant_id: str, secret: str, webhook_id: str | None, body_file) -> None:
    """Sign BODY_FILE (an order event as JSON) and POST it; prints the status and the answer."""
    import httpx

    from attribution.webhook_tool import signed_request
    from attribution.webhooks import MAX_WEBHOOK_ID_CHARS, WEBHOOK_ID_RULE
    from core import validate

    # Checked here as the server would: unchecked, an id past ASCII failed in httpx with a traceback.
    if not validate.is_id(merchant_id):
        raise click.BadParameter("1-64 characters of A-Z a-z 0-9 _ -", param_hint="--merchant")
    if webhook_id is not None and not (
        validate.is_webhook_id(webhook_id) and len(webhook_id) <= MAX_WEBHOOK_ID_CHARS
    ):
        raise click.BadParameter(WEBHOOK_ID_RULE, param_hint="--id")
    body = body_file.read()
    target = f"{url.rstrip('/')}/webhooks/orders/{merchant_id}"
    try:
        headers = signed_request(secret, body, webhook_id)
    except ValueError:  # binascii.Error too: the part after whsec_ is not base64
        raise click.BadParameter("not a webhook secret (whsec_ and base64)", param_hint="--secret") from None
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=30)
    except httpx.InvalidURL as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {target}: {exc}") from None
    click.echo(f"{response.status_code} {response.reason_phrase}")
    click.echo(response.text)
    sys.exit(0 if response.is_success else 1)


@webhook.command("verify")
@click.option("--secret", required=True, help="The webhook secret (whsec_...).")
@click.option(
    "--headers",
    "headers_file",
    type=click.File("rb"),
    default=None,
    help="The request's headers, one 'Name: value' a line [BODY_FILE is then the whole request].",
)
@click.argument("body_file", type=click.File("rb"))
def webhook_verify(secret: str, headers_file, body_file) -> None:
    """Check a captured webhook request and say exactly what is wrong with it."""
    import time

    from attribution.webhook_tool import diagnose, parse_headers, split_request

    raw = body_file.read()
    if headers_file is not None:
        # Latin-1, as HTTP reads a header and as a whole request's head is read: any bytes decode.
        headers, body = parse_headers(headers_file.read().decode("latin-1")), raw
    else:
        headers, body = split_request(raw)
    problems = diagnose(body, headers, secret, int(time.time()))
    for problem in problems:
        click.echo(f"FAIL: {problem}")
    if not problems:
        click.echo("OK: the signature and the timestamp are valid")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
