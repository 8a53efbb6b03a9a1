"""The command line's refusals: a bad option, bad settings or a store out of reach is one line and an exit
code (2 usage, 78 settings, 75 try again), never a traceback. Stores are named on port 1 of loopback,
where nothing listens."""

from __future__ import annotations

import os

import click
import pytest
import redis.exceptions
from click.testing import CliRunner

from clicktrail.cli import EX_CONFIG, EX_TEMPFAIL, _Main, main
from core.clickhouse import ClickHouseError, PartsInDoubt

NO_REDIS = {"CLICKTRAIL_REDIS_URL": "redis://127.0.0.1:1/0"}
NO_CLICKHOUSE = {"CLICKTRAIL_CLICKHOUSE_URL": "clickhouse://default:@127.0.0.1:1/x"}


def run(tmp_path, args: list[str], env: dict[str, str] | None = None):
    env = {"CLICKTRAIL_DATA_DIR": str(tmp_path / "data"), **(env or {})}
    return CliRunner().invoke(main, args, env=env)


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        # FloatRange lets NaN through (no comparison holds): it ran a batch 20 times a second
        (["attribute", "--every", "nan"], {}, 2, "finite"),
        (["attribute", "--every", "inf"], {}, 2, "finite"),
        # 99999 was served on 99999 mod 65536 while the log said 99999
        (["serve", "--port", "99999"], {}, 2, "0<=x<=65535"),
        (["ingest", "--metrics-port", "-1"], {}, 2, "0<=x<=65535"),
        (["deliver", "--metrics-port", "70000"], {}, 2, "0<=x<=65535"),
        (["attribute", "--metrics-port", "70000"], {}, 2, "0<=x<=65535"),
        (["migrate"], {"CLICKTRAIL_INGEST_BATCH_SIZE": "abc"}, EX_CONFIG, "ingest_batch_size"),
        (["migrate"], {"CLICKTRAIL_REDIS_PREFIX": ""}, EX_CONFIG, "redis_prefix"),
        (["migrate"], {"CLICKTRAIL_CLICKHOUSE_URL": "notaurl"}, EX_CONFIG, "clickhouse_url"),
        (["migrate"], {"CLICKTRAIL_DATA_DIR": "/proc/no/such"}, EX_CONFIG, "CLICKTRAIL_DATA_DIR"),
        (["attribute"], NO_REDIS, EX_TEMPFAIL, "Redis cannot be reached"),
        (["deliver", "--once"], NO_REDIS, EX_TEMPFAIL, "Redis cannot be reached"),  # it retried for ever
        (["keys", "reindex"], NO_REDIS, EX_TEMPFAIL, "Redis cannot be reached"),
        (["migrate"], NO_CLICKHOUSE, EX_TEMPFAIL, "ClickHouse cannot be reached"),
        (["report", "links", "--merchant", "m1"], NO_CLICKHOUSE, EX_TEMPFAIL, "ClickHouse cannot be reached"),
    ],
)
def test_refusals_are_one_line_and_an_exit_code(tmp_path, args, env, code, says) -> None:
    result = run(tmp_path, args, env)
    assert result.exit_code == code, (result.output, result.exception)
    assert says in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_webhook_send_names_a_bad_secret_or_url(tmp_path) -> None:
    body = tmp_path / "order.json"
    body.write_bytes(b"{}")
    bad_secret = [
        "webhook",
        "send",
        "--url",
        "http://127.0.0.1:1",
        "--merchant",
        "m1",
        "--secret",
        "whsec_abc",
    ]
    result = run(tmp_path, [*bad_secret, str(body)])
    assert result.exit_code == 2 and "--secret" in result.output, result.output
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    bad_url = ["webhook", "send", "--url", "http://[::1", "--merchant", "m1", "--secret", secret]
    result = run(tmp_path, [*bad_url, str(body)])
    assert result.exit_code == 2 and "--url" in result.output, result.output


def _server_exception() -> ClickHouseError:
    from clickhouse_driver.errors import ServerException

    try:
        raise ClickHouseError("ServerException: Code: 62. Syntax error") from ServerException(
            "Syntax error", 62
        )
    except ClickHouseError as exc:
        return exc


def _network_error() -> ClickHouseError:
    from clickhouse_driver.errors import NetworkError

    try:
        raise ClickHouseError("NetworkError: Code: 210. Connection refused") from NetworkError("refused")
    except ClickHouseError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (redis.exceptions.ConnectionError("Error 111 connecting"), EX_TEMPFAIL, "Redis cannot be reached"),
        (redis.exceptions.TimeoutError("Timeout reading"), EX_TEMPFAIL, "Redis cannot be reached"),
        (redis.exceptions.ClusterDownError("CLUSTERDOWN"), EX_TEMPFAIL, "Redis cannot be reached"),
        # the store answered: trying again would not help, and cron must not retry it for ever
        (redis.exceptions.ResponseError("WRONGTYPE Operation"), 1, "Redis refused: WRONGTYPE"),
        (redis.exceptions.NoPermissionError("NOPERM user"), 1, "Redis refused: NOPERM"),
        (_network_error(), EX_TEMPFAIL, "ClickHouse cannot be reached"),
        (PartsInDoubt("a replica in doubt"), EX_TEMPFAIL, "ClickHouse cannot be reached"),
        (_server_exception(), 1, "ClickHouse refused: ServerException"),
    ],
)
def test_a_store_out_of_reach_is_75_and_a_store_refusing_is_1(error, code, says) -> None:
    group = _Main("t")

    @group.command()
    def work() -> None:
        raise error

    result = CliRunner().invoke(group, ["work"])
    assert result.exit_code == code, (result.output, result.exception)
    assert says in result.output and "Traceback" not in result.output


def test_the_drivers_traceback_filter_is_added_once(tmp_path) -> None:
    """Each command run in one process (tests, a shell embedding the CLI) added another filter."""
    import logging

    for _ in range(3):
        run(tmp_path, ["migrate"], NO_CLICKHOUSE)
    assert len(logging.getLogger("clickhouse_driver.connection").filters) == 1


SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


# Arguments are read with surrogateescape: bytes that are not UTF-8 arrive as lone surrogates, which failed
# with a traceback where they were first encoded (a query parameter, an HTTP request, a Redis name) or, for
# `ingest --consumer`, were retried for ever as a "clickhouse error". Stores on port 1: never reached.
@pytest.mark.parametrize(
    "args",
    [
        ["report", "earnings", "--creator", "c\udcff"],
        ["report", "links", "--merchant", "m\udcff"],
        ["ingest", "--once", "--consumer", "w\udcff"],
        ["attribute", "--explain", "m1", "o\udc80"],
        ["webhook", "send", "--url", "http://127.0.0.1:1/\udcff", "--merchant", "m1", "--secret", SECRET,
         "-"],
        ["webhook", "send", "--url", "http://127.0.0.1:1", "--merchant", "m1", "--secret", SECRET,
         "--id", "w\udcff", "-"],
        ["serve", "--host", "127.0.0.\udcff"],
    ],
)  # fmt: skip
def test_an_argument_that_is_not_utf8_is_a_usage_error(tmp_path, args) -> None:
    result = run(tmp_path, args, {**NO_REDIS, **NO_CLICKHOUSE})
    assert result.exit_code == 2, (result.output, result.exception)
    assert "must be UTF-8 text" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--merchant", "m é"), ("--merchant", "m/1"), ("--id", "wé"), ("--id", " w"), ("--id", "w" * 257)],
)
def test_webhook_send_checks_the_merchant_and_the_id_as_the_server_does(tmp_path, option, value) -> None:
    """Unchecked, an id past ASCII failed inside httpx with a traceback."""
    body = tmp_path / "order.json"
    body.write_bytes(b"{}")
    args = {"--url": "http://127.0.0.1:1", "--merchant": "m1", "--secret": SECRET, option: value}
    result = run(tmp_path, ["webhook", "send", *[x for kv in args.items() for x in kv], str(body)])
    assert result.exit_code == 2 and option in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_webhook_verify_reads_a_headers_file_of_any_bytes(tmp_path) -> None:
    headers = tmp_path / "headers.txt"
    headers.write_bytes(b"webhook-id: msg_\xff\xfe\nwebhook-timestamp: 1\nwebhook-signature: v1,abc\n")
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    result = run(tmp_path, ["webhook", "verify", "--secret", SECRET, "--headers", str(headers), str(body)])
    assert result.exit_code == 1 and "FAIL" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_file_whose_name_is_not_utf8_may_still_be_named(tmp_path) -> None:
    """Review: the UTF-8 check refused BODY_FILE and --headers files whose names are other bytes, which
    POSIX allows; such a file is opened, its name never sent anywhere."""
    name = os.fsdecode(bytes(tmp_path / "order") + b"\xff.json")
    with open(name, "wb") as body:
        body.write(b"{}")
    result = run(tmp_path, ["webhook", "verify", "--secret", SECRET, name])
    assert result.exit_code == 1 and "FAIL" in result.output, result.output  # read and diagnosed
    result = run(tmp_path, ["webhook", "verify", "--secret", SECRET, f"--headers={name}", name])
    assert result.exit_code == 1 and "FAIL" in result.output, result.output  # the option's form too
    # Review: the exemption went by value, so text naming an existing file got through where it is sent.
    sent = ["webhook", "send", "--url", name, "--merchant", "m1", "--secret", SECRET, name]
    result = run(tmp_path, sent)
    assert result.exit_code == 2 and "must be UTF-8 text" in result.output and "--url" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_every_command_checks_its_text() -> None:
    """Every command of the tree, nested groups' too, is one that refuses text that is not UTF-8."""
    from clicktrail.cli import _TextCommand

    def leaves(group: click.Group) -> list[click.Command]:
        found = []
        for command in group.commands.values():
            found += leaves(command) if isinstance(command, click.Group) else [command]
        return found

    commands = leaves(main)
    assert len(commands) >= 10 and all(isinstance(c, _TextCommand) for c in commands), commands
