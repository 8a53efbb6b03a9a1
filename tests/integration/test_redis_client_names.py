"""With CLICKTRAIL_REDIS_CLIENT_NAMES, every Redis connection names its process and role (CLIENT SETNAME), on
one node and on a cluster, so that `CLIENT LIST` tells a redirect worker's recorder from its lookups, the
API, an ingester or the attributor; without it (the default), none does."""

from __future__ import annotations

import asyncio

import pytest

from core.redisclient import async_client, client_name, failover_client, sync_client
from tests.integration.apphelp import running_app

pytestmark = pytest.mark.redis


def names(client) -> set[str]:
    """The names of every connection the server (on a cluster: every node) has now."""
    if hasattr(client, "get_nodes"):
        listed = [c for per_node in client.client_list(target_nodes="all").values() for c in per_node]
    else:
        listed = client.client_list()
    return {c["name"] for c in listed if c["name"]}


@pytest.mark.parametrize("role", ["", "serve recorder", "a\nb"])
def test_a_role_is_one_word(role: str, settings) -> None:
    with pytest.raises(ValueError):
        client_name(role)
    # Names off (the default): still refused, so that turning them on cannot break a process.
    with pytest.raises(ValueError):
        sync_client(settings, role=role)


def named(settings):
    return settings.model_copy(update={"redis_client_names": True})


def _factories_name_their_connections(settings, admin) -> None:
    async def scenario() -> None:
        one = async_client(settings, 1.0, 0, role="test-async")
        two = failover_client(settings, role="test-failover")
        try:
            await one.set(settings.redis_prefix + "n1", 1)
            await two.set(settings.redis_prefix + "n2", 2)
            seen = names(admin)
            assert {"clicktrail-test-async", "clicktrail-test-failover"} <= seen, seen
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(scenario())
    blocking = sync_client(settings, role="test-sync")
    try:
        blocking.set(settings.redis_prefix + "n3", 3)
        assert "clicktrail-test-sync" in names(admin)
    finally:
        blocking.close()


def test_factories_name_their_connections(settings, redis_client) -> None:
    _factories_name_their_connections(named(settings), redis_client)


@pytest.mark.cluster
def test_factories_name_their_connections_on_a_cluster(cluster_settings, cluster_redis) -> None:
    _factories_name_their_connections(named(cluster_settings), cluster_redis)


def test_no_connection_is_named_by_default(settings, redis_client) -> None:
    """A Redis user whose ACL lacks +client|setname would have every named connection refused."""

    async def scenario() -> None:
        client = failover_client(settings, role="test-unnamed")
        try:
            await client.set(settings.redis_prefix + "n0", 0)
            assert await client.client_getname() is None
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_redirect_worker_names_each_of_its_connections(settings, redis_client, clickhouse) -> None:
    """The API's client, the lookups, and the recorder's write line (on one node the recorder writes
    through that connection of its own; its client's pool opens one only for click limits)."""
    from core.migrate import migrate
    from tests.integration.apphelp import make_link

    migrate(clickhouse, log=lambda *_: None)

    async def scenario() -> set[str]:
        async with running_app(named(settings)) as (_app, client):
            link = await make_link(client, "alice", "https://shop.example.com/p")
            assert (await client.get(f"/{link['code']}")).status_code == 302
            return names(redis_client)

    seen = asyncio.run(scenario())
    wanted = {f"clicktrail-serve-{role}" for role in ("api", "lookup", "recorder-line")}
    assert wanted <= seen, seen
