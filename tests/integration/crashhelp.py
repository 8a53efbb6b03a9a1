"""Killing a real ingest process at a chosen point, for the crash tests on one node and on the clusters
(test_ingest_crash.py, test_redis_cluster.py, test_clickhouse_cluster.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from core.settings import Settings

CLI = str(Path(sys.executable).with_name("clicktrail"))
# A child that runs the real ingest loop and kills itself (SIGKILL: no cleanup, no flush) at the given
# hit of a checkpoint, as consumer argv[3]. The hook exists only here, in the tests.
CHILD = """
import os, signal, sys
from prometheus_client import CollectorRegistry
from core.settings import Settings
from redirector.ingest.process import run_streams, stream_specs

point, hit, consumer = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = []

def checkpoint(name):
    if name == point:
        seen.append(name)
        if len(seen) == hit:
            os.kill(os.getpid(), signal.SIGKILL)

settings = Settings.load()
sys.exit(run_streams(settings, stream_specs(settings), consumer=consumer, registry=CollectorRegistry(),
                     once=True, checkpoint=checkpoint))
"""
# Small batches, a short claim idle time and insert timeout: the crash tests' ingest tuning.
CRASH_TUNING = {
    "CLICKTRAIL_INGEST_BATCH_SIZE": "1000",
    "CLICKTRAIL_INGEST_FLUSH_INTERVAL_MS": "200",
    "CLICKTRAIL_INGEST_CLAIM_IDLE_MS": "3000",
    "CLICKTRAIL_CLICKHOUSE_INSERT_TIMEOUT_S": "2",
}


def ingest_env(settings: Settings, tuning: dict[str, str]) -> dict[str, str]:
    """The environment of an ingest process using the test's Redis, ClickHouse, prefix and database (a
    cluster of either when the settings name one), with `tuning` on top."""
    env = {
        **os.environ,
        "CLICKTRAIL_REDIS_URL": settings.redis_url,
        "CLICKTRAIL_REDIS_PREFIX": settings.redis_prefix,
        "CLICKTRAIL_CLICKHOUSE_URL": settings.clickhouse_url,
        "CLICKTRAIL_SECRET_KEY": settings.secret_key,
        "CLICKTRAIL_DATA_DIR": str(settings.data_dir),
    }
    if settings.redis_cluster:
        env["CLICKTRAIL_REDIS_CLUSTER"] = "true"
    if settings.clickhouse_cluster:
        env["CLICKTRAIL_CLICKHOUSE_CLUSTER"] = settings.clickhouse_cluster
        env["CLICKTRAIL_CLICKHOUSE_ALT_HOSTS"] = ",".join(settings.clickhouse_alt_hosts)
    return {**env, **tuning}


def kill_at(env: dict[str, str], point: str, hit: int, consumer: str) -> None:
    """Run the ingest loop as `consumer` until its `hit`-th pass through checkpoint `point`, where it dies."""
    child = subprocess.run([sys.executable, "-c", CHILD, point, str(hit), consumer], env=env, timeout=120)
    assert child.returncode == -signal.SIGKILL
