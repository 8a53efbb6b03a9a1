"""The ClickHouse cluster settings: read from the environment, checked once, and the backend they pick."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.clickhouse import NativeClickHouse, with_alt_hosts
from core.cluster import ClusterClickHouse, connect
from core.settings import Settings


def test_single_node_is_the_default(monkeypatch) -> None:
    for name in ("CLICKTRAIL_CLICKHOUSE_CLUSTER", "CLICKTRAIL_CLICKHOUSE_ALT_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(secret_key="s")
    assert (settings.clickhouse_cluster, settings.clickhouse_alt_hosts) == ("", [])
    assert isinstance(connect(settings), NativeClickHouse)  # the driver connects lazily: no server needed


def test_cluster_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CLICKTRAIL_CLICKHOUSE_CLUSTER", "clicktrail")
    monkeypatch.setenv("CLICKTRAIL_CLICKHOUSE_ALT_HOSTS", " 127.0.0.1:9102, ch3:9000 ,")
    settings = Settings(secret_key="s")
    assert settings.clickhouse_cluster == "clicktrail"
    assert settings.clickhouse_alt_hosts == ["127.0.0.1:9102", "ch3:9000"]
    backend = connect(settings)
    assert isinstance(backend, ClusterClickHouse) and backend.cluster == "clicktrail"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clickhouse_alt_hosts", "host"),
        ("clickhouse_alt_hosts", "host:0"),
        ("clickhouse_alt_hosts", "host:70000"),
        ("clickhouse_alt_hosts", ":9000"),
        ("clickhouse_alt_hosts", "host:９０００"),
        ("clickhouse_cluster", "my-cluster"),
        ("clickhouse_cluster", "clüster"),
        ("clickhouse_cluster", "a b"),
    ],
)
def test_bad_values_are_refused_at_start_up(field: str, value: str, monkeypatch) -> None:
    monkeypatch.setenv(f"CLICKTRAIL_{field.upper()}", value)
    with pytest.raises(ValidationError):
        Settings(secret_key="s")


@pytest.mark.parametrize(
    ("query", "alt_hosts", "expected"),
    [
        ("", [], ""),
        ("", ["a:1", "b:2"], "alt_hosts=a:1,b:2"),
        ("compression=lz4", ["a:1"], "compression=lz4&alt_hosts=a:1"),
        ("compression=lz4", [], "compression=lz4"),
    ],
)
def test_alt_hosts_go_into_the_driver_url(query: str, alt_hosts: list[str], expected: str) -> None:
    assert with_alt_hosts(query, alt_hosts) == expected
