"""Processes a benchmark starts: free loopback ports, readiness polling, and a stop that never leaves
anything behind (SIGTERM to the leader, then SIGKILL to its whole process group)."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
# A server that is not answering after this long is reported as failed rather than waited for.
START_TIMEOUT_S = 120.0
# Graceful shutdown budget (a redirect server flushes its buffered clicks in it) before SIGKILL.
STOP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05


class MissingTool(RuntimeError):
    """A program a benchmark runs is not installed."""


def binary(name: str, package: str, *elsewhere: str) -> str:
    """The path of program `name` (on PATH, else the first of `elsewhere` that exists); MissingTool,
    naming the Debian package that brings it, when there is none."""
    found = shutil.which(name) or next((path for path in elsewhere if Path(path).exists()), None)
    if found is None:
        raise MissingTool(
            f"{name} is not installed (Debian package `{package}`; scripts/bootstrap.sh installs it)"
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def start(
    cmd: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start `cmd` in a session of its own (so its whole group can be stopped), output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the leader (as an operator would), wait, then SIGKILL whatever is left of its group.
    Returns the leader's exit code (None if it had to be killed)."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    code: int | None = None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
    else:
        code = proc.returncode
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=10)
    return code


def http_get(port: int, path: str, timeout_s: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def _processes() -> Iterator[tuple[Path, str, list[str]]]:
    """Each live process: its /proc/PID/stat path, command name and the fields after the name (field 3
    on: state, ppid, pgrp, ... utime at [11], stime at [12])."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split(" (", 1)[1].rsplit(")", 1)
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        yield stat, name, rest.split()


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    total = sum(int(f[11]) + int(f[12]) for _, _, f in _processes() if int(f[2]) == pgid)
    return total / os.sysconf("SC_CLK_TCK")


def command_cpu_s(command: str) -> float:
    """CPU seconds (user + system) used so far by the live processes whose command name (/proc/PID/stat's
    second field, 15 characters at most) starts with `command`, such as the ClickHouse or Redis server."""
    total = sum(int(f[11]) + int(f[12]) for _, name, f in _processes() if name.startswith(command))
    return total / os.sysconf("SC_CLK_TCK")


def group_run_delay_s(pgid: int) -> float:
    """Seconds the main threads of a process group's live processes have waited, runnable, for a core
    (/proc/PID/schedstat, second field): time an event loop lost to other processes, not to its own work."""
    total = 0
    for stat, _, fields in _processes():
        if int(fields[2]) == pgid:
            try:
                total += int((stat.parent / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return total / 1e9


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over all cores (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


class CpuMeter:
    """Cores used by some process groups, and by the whole machine, between start() and stop(): on a
    shared machine this tells a slow server from a starved one."""

    def __init__(self, groups: Mapping[str, int]) -> None:
        self.groups = dict(groups)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._groups0 = {name: group_cpu_s(pgid) for name, pgid in self.groups.items()}
        self._delays0 = {name: group_run_delay_s(pgid) for name, pgid in self.groups.items()}
        self._machine0 = machine_cpu_s()

    def stop(self) -> dict:
        wall = time.monotonic() - self._t0
        busy1, _ = machine_cpu_s()
        # CPU seconds as well as cores: a figure per request must not depend on this window's edges.
        self.cpu_s = {name: group_cpu_s(pgid) - self._groups0[name] for name, pgid in self.groups.items()}
        cores = {name: round(seconds / wall, 2) for name, seconds in self.cpu_s.items()}
        cores["machine_busy"] = round((busy1 - self._machine0[0]) / wall, 2)
        cores["machine_cores"] = os.cpu_count()
        self.run_queue_wait = {
            name: round((group_run_delay_s(pgid) - self._delays0[name]) / wall, 3)
            for name, pgid in self.groups.items()
        }
        return cores


def wait_until(
    proc: subprocess.Popen, condition: Callable[[], bool], what: str, *, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Poll `condition` until true; TimeoutError after `timeout_s`, RuntimeError if the process died."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s")
        time.sleep(POLL_INTERVAL_S)


def wait_http(
    proc: subprocess.Popen,
    port: int,
    path: str,
    *,
    ok: tuple[int, ...] = (200,),
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    """Poll until GET `path` answers with a status in `ok`; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            status, _, _ = http_get(port, path, timeout_s=1.0)
            if status in ok:
                return
            last = status
        except OSError as exc:
            last = exc
        time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(f"server on port {port} not ready after {timeout_s:.0f}s (last: {last!r})")
