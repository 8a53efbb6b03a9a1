"""Running `clicktrail serve` as a real process on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import httpx

from core.settings import Settings
from tests.conftest import free_port


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CLICKTRAIL_REDIS_URL=settings.redis_url,
        CLICKTRAIL_REDIS_PREFIX=settings.redis_prefix,
        CLICKTRAIL_CLICKHOUSE_URL=settings.clickhouse_url,
        CLICKTRAIL_ADMIN_TOKEN=settings.admin_token or "",
        CLICKTRAIL_SECRET_KEY=settings.secret_key or "",
        CLICKTRAIL_DATA_DIR=str(settings.data_dir),
        # The cluster switches, so that a child process runs on the topology the test's settings name.
        CLICKTRAIL_REDIS_CLUSTER=str(settings.redis_cluster).lower(),
        CLICKTRAIL_REDIS_MIN_REPLICAS_ACKED=str(settings.redis_min_replicas_acked),
        CLICKTRAIL_CLICKHOUSE_CLUSTER=settings.clickhouse_cluster,
        CLICKTRAIL_CLICKHOUSE_ALT_HOSTS=",".join(settings.clickhouse_alt_hosts),
    )
    return env


class ServeProcess:
    # A port found free can be taken before serve binds it (outgoing connections draw from the same
    # ephemeral range): on "address already in use", try another.
    BIND_ATTEMPTS = 3

    def __init__(self, settings: Settings, workers: int = 1) -> None:
        for _ in range(self.BIND_ATTEMPTS):
            if self._start(settings, workers):
                return
        raise RuntimeError("serve could not bind a free port")

    def _start(self, settings: Settings, workers: int) -> bool:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "clicktrail.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, "--workers", str(workers)],
            env=settings_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = self.output()
                if "address already in use" in output:
                    return False
                raise RuntimeError(f"serve exited: {output}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return True
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"serve did not come up: {self.output()}")

    def output(self) -> str:
        return self.proc.stdout.read().decode() if self.proc.stdout and self.proc.poll() is not None else ""

    def stop(self) -> None:
        """Kill the whole process group: with --workers N the workers are children of the server."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
