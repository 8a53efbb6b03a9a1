"""One private clicktrail for one scenario, as real processes: redis-server, clickhouse-server,
`clicktrail migrate`, `clicktrail serve`, `clicktrail ingest` (and `attribute` when asked), with their own
ports, data directory and logs under a temporary directory."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from core.keys import INGEST_GROUP, Keys
from core.streaminfo import stream_lag
from loadtests.services import ClickHouseServer, RedisServer, free_port

ADMIN_TOKEN = "loadtest-admin-token"
PREFIX = "ct:"
DATABASE = "clicktrail"
INGEST_CONSUMER = "loadtest-ingester"  # stable: a restarted ingester takes back its pending entries at once
BIND_ATTEMPTS = 3

SERVE_START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 45
LAG_READ_ATTEMPTS = 5
_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


class PortTaken(Exception):
    """The port picked for serve was taken before serve could bind it."""


class System:
    def __init__(
        self,
        root: Path,
        *,
        appendfsync: str = "everysec",
        workers: int = 1,
        clickhouse: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.workers = workers
        self.redis = RedisServer(root / "redis", appendfsync)
        self.ch = ClickHouseServer(root / "clickhouse") if clickhouse else None
        self.data_dir = root / "data"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.ingest_metrics_port = free_port()
        self.keys = Keys(PREFIX)
        self.extra_env = env or {}
        self.serve_proc: subprocess.Popen | None = None
        self.ingest_proc: subprocess.Popen | None = None
        self.attribute_proc: subprocess.Popen | None = None
        self.secret = secrets.token_urlsafe(24)

    # --- processes --------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRAIL_")}
        env.update(
            CLICKTRAIL_REDIS_URL=self.redis.url,
            CLICKTRAIL_REDIS_PREFIX=PREFIX,
            CLICKTRAIL_CLICKHOUSE_URL=self.ch.url(DATABASE) if self.ch else "clickhouse://127.0.0.1:1/none",
            CLICKTRAIL_ADMIN_TOKEN=ADMIN_TOKEN,
            CLICKTRAIL_SECRET_KEY=self.secret,
            CLICKTRAIL_DATA_DIR=str(self.data_dir),
            CLICKTRAIL_PUBLIC_URL=f"http://127.0.0.1:{self.port}",
            **self.extra_env,
        )
        return env

    @staticmethod
    def cli() -> list[str]:
        return [sys.executable, "-m", "clicktrail.cli"]

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        try:
            return subprocess.Popen(
                [*self.cli(), *args],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def start(self, ingest: bool = True) -> None:
        self.redis.start()
        if self.ch is not None:
            self.ch.start()
            self.migrate()
        self.start_serve()
        if ingest and self.ch is not None:
            self.start_ingest()

    def migrate(self) -> None:
        proc = self._spawn("migrate", "migrate")
        if proc.wait(120) != 0:
            raise RuntimeError(f"clicktrail migrate failed: see {self.logs / 'migrate.log'}")

    def start_serve(self) -> None:
        # A port found free a moment ago can be taken meanwhile (an outgoing connection draws from the same
        # ephemeral range): on "address already in use", draw another.
        for _ in range(BIND_ATTEMPTS):
            try:
                return self._start_serve_once()
            except PortTaken:
                self.port = free_port()
        raise RuntimeError(f"serve could not bind a free port in {BIND_ATTEMPTS} attempts")

    def _start_serve_once(self) -> None:
        args = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        self.serve_proc = self._spawn("serve", *args)
        deadline = time.monotonic() + SERVE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.serve_proc.poll() is not None:
                if "address already in use" in (self.logs / "serve.log").read_text(errors="replace"):
                    raise PortTaken(self.port)
                raise RuntimeError(f"serve exited: see {self.logs / 'serve.log'}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("serve did not come up")

    def start_ingest(self) -> None:
        self.ingest_proc = self._spawn(
            "ingest", "ingest", "--consumer", INGEST_CONSUMER, "--metrics-port", str(self.ingest_metrics_port)
        )

    def start_attribute(self, every_s: float) -> None:
        self.attribute_proc = self._spawn("attribute", "attribute", "--every", str(every_s))

    def kill_ingest(self) -> None:
        _kill(self.ingest_proc)

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes under `serve --workers N` (children of the serve process)."""
        assert self.serve_proc is not None
        pid = self.serve_proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        workers = []
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                workers.append(int(child))
        return workers

    def close(self) -> None:
        """Stop everything in order (server first, so that it flushes); one failing stop never leaves the
        others running."""
        steps = [
            functools.partial(_terminate, p) for p in (self.serve_proc, self.attribute_proc, self.ingest_proc)
        ]
        steps += [self.ch.stop] if self.ch is not None else []
        steps.append(self.redis.stop)
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                print(f"loadtests: stopping a process failed: {exc!r}", file=sys.stderr)

    def stop_serve(self) -> int | None:
        return _terminate(self.serve_proc)

    # --- HTTP -------------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: object = None, headers: dict | None = None, timeout_s: float = 10
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def admin(self, method: str, path: str, body: object = None) -> dict:
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
        status, data = self.request(method, path, body, headers)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else {}

    def make_links(self, count: int, url: str = "https://shop.example.com/p/{i}") -> list[str]:
        return [
            self.admin("POST", "/api/links", {"url": url.format(i=i), "creator_id": f"creator{i % 5}"})[
                "code"
            ]
            for i in range(count)
        ]

    def metrics(self, port: int | None = None) -> dict[str, float]:
        """One scrape of `/metrics` (serve's, or the ingester's with its port) as {'name{labels}': value}."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        return parse_metrics(text)

    # --- state ------------------------------------------------------------------------------------
    def redis_client(self) -> redis.Redis:
        return self.redis.client(socket_timeout=5)

    def spool_files(self) -> list[Path]:
        spool = self.data_dir / "spool"
        return sorted(spool.glob("*.spool")) if spool.is_dir() else []

    def click_lag(self) -> tuple[int, float]:
        return self.lag(self.keys.clicks)

    def lag(self, stream: str) -> tuple[int, float]:
        """(entries not yet in ClickHouse, age of the oldest) of one stream, as the ingester computes it."""
        client = self.redis_client()
        try:
            if not client.exists(stream):
                return 0, 0.0
            for _ in range(LAG_READ_ATTEMPTS):
                try:
                    return stream_lag(client, stream, INGEST_GROUP)
                except AttributeError:
                    # streaminfo.stream_lag races with an ack: XINFO says "pending", XPENDING then has no
                    # min (None). Read again.
                    time.sleep(0.01)
            return stream_lag(client, stream, INGEST_GROUP)
        finally:
            client.close()

    def wait_drained(self, timeout_s: float, expected: int | None = None) -> bool:
        """Until nothing is left in spools or in the click stream's backlog (and, if given, ClickHouse
        holds at least `expected` clicks): True, or False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                idle = not self.spool_files() and self.click_lag()[0] == 0
                if idle and (expected is None or self.stored_total() >= expected):
                    return True
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.25)
        return False

    def stored_total(self) -> int:
        assert self.ch is not None
        client = self.ch.client(DATABASE)
        try:
            return client.execute("SELECT count() FROM clicks")[0][0]
        finally:
            client.disconnect()

    def stored_clicks(self) -> tuple[dict[str, int], int, int]:
        """({click id: rows}, count(), count(DISTINCT click_id)) of the `clicks` table."""
        assert self.ch is not None
        client = self.ch.client(DATABASE)
        try:
            rows = dict(client.execute("SELECT click_id, count() FROM clicks GROUP BY click_id"))
            total, distinct = client.execute("SELECT count(), count(DISTINCT click_id) FROM clicks")[0]
        finally:
            client.disconnect()
        return rows, total, distinct


def parse_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match:
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def _terminate(proc: subprocess.Popen | None) -> int | None:
    """SIGTERM and wait (SIGKILL after the timeout); then SIGKILL whatever is left in the process group the
    child leads (its own session): uvicorn workers must not outlive a scenario."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def iter_metric(values: dict[str, float], name: str) -> Iterator[tuple[str, float]]:
    for key, value in values.items():
        if key == name or key.startswith(name + "{"):
            yield key, value
