"""Private Redis and ClickHouse servers for one load-test run: free loopback ports, their own directories,
started, signalled and restarted as real processes. The shared servers on 6379/9000 are never touched."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from clickhouse_driver import Client

# How long a server may take to answer after it was started (ClickHouse 18.16 loads its tables first).
REDIS_START_TIMEOUT_S = 15
CLICKHOUSE_START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(check, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting")
        try:
            check()
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer within {timeout_s} s")


class RedisServer:
    """redis-server with AOF on (`appendfsync` per scenario) and no RDB snapshots, as the README runs it."""

    def __init__(self, workdir: Path, appendfsync: str = "everysec") -> None:
        self.workdir = workdir
        self.appendfsync = appendfsync
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> None:
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.workdir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client(socket_timeout=1)
        try:
            _wait(client.ping, REDIS_START_TIMEOUT_S, "redis-server", self.proc)
        finally:
            client.close()

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server would not die before it runs again
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        self.kill()


SERVICES_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services.sh"


class ClickHouseServer:
    """clickhouse-server (Debian's 18.16) with the config of scripts/services.sh, on free ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tcp_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen | None = None
        subprocess.run(
            [
                "bash",
                str(SERVICES_SCRIPT),
                "clickhouse-config",
                str(workdir),
                str(self.tcp_port),
                str(self.http_port),
            ],
            check=True,
        )

    def url(self, database: str) -> str:
        return f"clickhouse://default:@127.0.0.1:{self.tcp_port}/{database}"

    def client(self, database: str = "default") -> Client:
        return Client(host="127.0.0.1", port=self.tcp_port, database=database, connect_timeout=2)

    def start(self) -> None:
        argv = [
            shutil.which("clickhouse-server") or "clickhouse-server",
            f"--config-file={self.workdir}/config.xml",
        ]
        log = open(self.workdir / "log" / "stdout.log", "ab")  # noqa: SIM115 (kept open by the child)
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()

        def ping() -> None:
            client = self.client()
            try:
                client.execute("SELECT 1")
            finally:
                client.disconnect()

        _wait(ping, CLICKHOUSE_START_TIMEOUT_S, "clickhouse-server", self.proc)

    def stop(self) -> None:
        """A clean stop (SIGTERM), as an operator would stop it; SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def raise_fd_limit(wanted: int = 16_384) -> None:
    """Slow-client and load scenarios hold thousands of sockets; children inherit the raised limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
