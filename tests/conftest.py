"""Shared fixtures. Integration tests use the real Redis and ClickHouse started by scripts/services.sh
(each test in its own key prefix or database) and opt in with a marker; fault tests that stop Redis get a
private redis-server of their own (`private_redis`)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.clickhouse import ChdbClickHouse, NativeClickHouse
from core.cluster import ClusterClickHouse
from core.migrate import migrate
from core.settings import Settings

REDIS_URL = os.environ.get("CLICKTRAIL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The local Redis Cluster of scripts/cluster-redis.sh (started by scripts/test.sh).
REDIS_CLUSTER_URL = os.environ.get("CLICKTRAIL_TEST_REDIS_CLUSTER_URL", "redis://127.0.0.1:7001/0")
CLICKHOUSE_URL = os.environ.get(
    "CLICKTRAIL_TEST_CLICKHOUSE_URL", "clickhouse://default:@127.0.0.1:9000/default"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def test_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture
def settings(tmp_path: Path, test_id: str) -> Settings:
    """Settings for one test: its own Redis prefix, ClickHouse database and data dir."""
    return Settings.load(
        redis_url=REDIS_URL,
        redis_prefix=f"ct:test:{test_id}:",
        clickhouse_url=CLICKHOUSE_URL.rsplit("/", 1)[0] + f"/ct_test_{test_id}",
        admin_token="admin-test-token",
        secret_key="test-secret-" + test_id,
        data_dir=tmp_path / "data",
    )


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    keys = list(client.scan_iter(match=settings.redis_prefix + "*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


@pytest.fixture
def clickhouse(settings: Settings) -> Iterator[NativeClickHouse]:
    backend = NativeClickHouse(settings.clickhouse_url)
    yield backend
    backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
    backend.close()


@pytest.fixture
def chdb_backend(tmp_path: Path) -> Iterator[ChdbClickHouse]:
    backend = ChdbClickHouse(str(tmp_path / "chdb"), database="clicktrail")
    yield backend
    backend.close()


class PrivateRedis:
    """A redis-server of a test's own, on a free loopback port, that the test may kill, stop or restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.workdir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def first_start(self, attempts: int = 3) -> None:
        """Start on a fresh port, drawing another if this one was taken before Redis could bind it."""
        for _ in range(attempts - 1):
            try:
                return self.start()
            except RuntimeError:
                self.kill()
                self.port = free_port()
        self.start()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.first_start()
    yield server
    server.kill()


@pytest.fixture
def cluster_settings(settings: Settings) -> Settings:
    """The test's settings pointed at the Redis Cluster (same prefix, database and data dir)."""
    return settings.model_copy(update={"redis_cluster": True, "redis_url": REDIS_CLUSTER_URL})


@pytest.fixture
def cluster_redis(cluster_settings: Settings) -> Iterator[redis.RedisCluster]:
    """A client of the Redis Cluster; the test's keys are removed from every primary afterwards."""
    client = redis.RedisCluster.from_url(cluster_settings.redis_url)
    yield client
    for key in client.scan_iter(match=cluster_settings.redis_prefix + "*", count=1000):
        client.delete(key)
    client.close()


# --- the ClickHouse cluster (scripts/cluster-clickhouse.sh: 2 shards x 2 replicas on 9101-9104) -----------
CLUSTER_URL = os.environ.get("CLICKTRAIL_TEST_CLUSTER_URL", "clickhouse://default:@127.0.0.1:9101/default")
CLUSTER_NAME = os.environ.get("CLICKTRAIL_TEST_CLUSTER", "clicktrail")
CLUSTER_ALT_HOSTS = os.environ.get(
    "CLICKTRAIL_TEST_CLUSTER_ALT_HOSTS", "127.0.0.1:9102,127.0.0.1:9103,127.0.0.1:9104"
)
# Its ZooKeeper, for tests that change what ZooKeeper records (zkCli.sh of Debian's zookeeper package).
CLUSTER_ZOOKEEPER = os.environ.get("CLICKTRAIL_TEST_CLUSTER_ZOOKEEPER", "127.0.0.1:2181")


@pytest.fixture(scope="session")
def clickhouse_cluster_up() -> None:
    """Start the local ClickHouse cluster once per session if it is not running (idempotent)."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "cluster-clickhouse.sh"
    subprocess.run([str(script), "start"], check=True, stdout=subprocess.DEVNULL, timeout=120)


@pytest.fixture
def ch_cluster_settings(settings: Settings, clickhouse_cluster_up: None) -> Settings:
    """`settings` pointed at the cluster: the test's own database there, failover to the other nodes."""
    return settings.model_copy(
        update={
            "clickhouse_url": CLUSTER_URL.rsplit("/", 1)[0] + "/" + settings.clickhouse_database,
            "clickhouse_cluster": CLUSTER_NAME,
            "clickhouse_alt_hosts": CLUSTER_ALT_HOSTS.split(","),
        }
    )


@pytest.fixture
def cluster_backend(ch_cluster_settings: Settings) -> Iterator[ClusterClickHouse]:
    backend = ClusterClickHouse(
        ch_cluster_settings.clickhouse_url, CLUSTER_NAME, alt_hosts=ch_cluster_settings.clickhouse_alt_hosts
    )
    yield backend
    backend.execute(f"DROP DATABASE IF EXISTS {backend.database} ON CLUSTER {CLUSTER_NAME}")
    backend.close()


@pytest.fixture(
    params=[
        pytest.param("clickhouse", marks=[pytest.mark.clickhouse, pytest.mark.redis]),
        pytest.param("chdb", marks=[pytest.mark.chdb, pytest.mark.redis]),
    ]
)
def backend(request, redis_client):
    """Each ClickHouse in turn (18.16 and current, through chdb), migrated, beside the test's Redis: the
    attribution, payout and event tests run the same ledger on both. A test file may define its own."""
    chosen = request.getfixturevalue("clickhouse" if request.param == "clickhouse" else "chdb_backend")
    migrate(chosen, log=lambda *_: None)
    return chosen
