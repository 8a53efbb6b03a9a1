"""The one place that builds Redis clients from the settings: a plain client for a single Redis, a
`RedisCluster` (hiredis parser, slot map refreshed on MOVED/ASK, retried on connection errors and
failovers) when `redis_cluster` is set. Everything else receives a client and never asks which kind."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from core.settings import Settings

# A Redis Cluster failover takes about 3-4 s (node timeout 3 s in scripts/cluster-redis.sh): clients that
# may retry (not the redirect path's) keep trying about that long before they give up.
FAILOVER_RETRIES = 8
FAILOVER_BACKOFF_CAP_S = 1.0
CONNECT_TIMEOUT_MAX_S = 2.0
# With `redis_client_names`, every connection names its process and role (CLIENT SETNAME, sent once per
# connection): `CLIENT LIST` then tells a redirect worker's recorder from an ingester or the attributor.
# No spaces (Redis refuses).
CLIENT_NAME_PREFIX = "clicktrail-"


def seed_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL may name several nodes (`redis://h1:7001,h2:7002/0`), so that a client starting
    while one of them is down still finds the cluster: (the URL with the first node, the others)."""
    parts = urlsplit(url)
    first, *rest = parts.netloc.rsplit("@", 1)[-1].split(",")
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    others = []
    for node in rest:
        host, _, port = node.rpartition(":")
        others.append((host.strip("[]"), int(port)))
    return urlunsplit(parts._replace(netloc=auth + first)), others


def client_name(role: str) -> str:
    """The name a connection of this role gives itself: `clicktrail-serve-recorder` and the like."""
    if not role or any(c.isspace() for c in role):
        raise ValueError(f"a Redis client name has no spaces: {role!r}")
    return CLIENT_NAME_PREFIX + role


def _name_for(settings: Settings, role: str) -> str | None:
    """The connection name a factory passes to redis-py: the role is checked whether or not names are
    on, so that turning them on cannot break a process that ran with them off."""
    name = client_name(role)
    return name if settings.redis_client_names else None


def async_client(
    settings: Settings, timeout_s: float, retries: int, *, role: str, retry_on_timeout: bool = False
) -> redis.asyncio.Redis:
    """A client whose every call gives up after `timeout_s`, retried `retries` times on a dropped
    connection (and on a timeout if asked). On a cluster, MOVED/ASK are followed as well, and a call
    that still fails after the retries refreshes the slot map for the next one. With
    `redis_client_names`, its connections are named after `role` (`client_name`)."""
    also = [RedisTimeoutError] if retry_on_timeout else []
    backoff = ExponentialBackoff(cap=0.5, base=0.02) if retries else NoBackoff()
    common = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": min(timeout_s, CONNECT_TIMEOUT_MAX_S),
        "client_name": _name_for(settings, role),
    }
    if settings.redis_cluster:
        url, others = seed_nodes(settings.redis_url)
        return AsyncRedisCluster.from_url(
            url,
            startup_nodes=[AsyncClusterNode(host, port) for host, port in others],
            retry=AsyncRetry(backoff, retries),
            retry_on_error=[RedisConnectionError, *also],
            **common,
        )
    return redis.asyncio.Redis.from_url(
        settings.redis_url,
        retry=AsyncRetry(backoff, retries),
        retry_on_error=[RedisConnectionError, *also],
        **common,
    )


def sync_client(settings: Settings, timeout_s: float | None = None, *, role: str) -> redis.Redis:
    """A blocking client for the ingester and the command-line tools: on a cluster it rides out a
    failover (retries with back-off for a few seconds). With `timeout_s`, each call gives up after it.
    With `redis_client_names`, its connections are named after `role`."""
    common = {"socket_timeout": timeout_s, "client_name": _name_for(settings, role)}
    if settings.redis_cluster:
        url, others = seed_nodes(settings.redis_url)
        return RedisCluster.from_url(
            url,
            startup_nodes=[ClusterNode(host, port) for host, port in others],
            retry=Retry(ExponentialBackoff(cap=FAILOVER_BACKOFF_CAP_S, base=0.05), FAILOVER_RETRIES),
            **common,
        )
    return redis.Redis.from_url(settings.redis_url, **common)


def failover_client(settings: Settings, timeout_s: float = 5.0, *, role: str) -> redis.asyncio.Redis:
    """The API's and the attributor's async client: retries briefly, long enough for a failover."""
    retries = FAILOVER_RETRIES if settings.redis_cluster else 3
    return async_client(settings, timeout_s, retries, role=role, retry_on_timeout=True)


class ReplicasBehind(RedisError):
    """Fewer replicas than asked acknowledged a write within the WAIT timeout."""


async def eval_replicated(
    client: redis.asyncio.Redis, script: str, keys: list[str], args: list, replicas: int, timeout_ms: int
) -> object:
    """Run `script` on `keys` (one slot), then `WAIT replicas timeout_ms` on the same connection (WAIT
    counts the replicas that have this connection's writes, so it must follow them on it: on a cluster,
    both go to the primary of the keys' slot in one pipeline). Returns the script's reply; raises
    ReplicasBehind when fewer replicas acknowledged in time (the write may still be on the primary)."""
    if isinstance(client, AsyncRedisCluster):
        if client._initialize:  # the slot map is read on first use
            await client.initialize()
        node = client.get_node_from_key(keys[0])
        pipe = client.pipeline()
        pipe.execute_command("EVAL", script, len(keys), *keys, *args)
        pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
    else:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("EVAL", script, len(keys), *keys, *args)
        pipe.execute_command("WAIT", replicas, timeout_ms)
    reply, acked = await pipe.execute()
    if int(acked) < replicas:
        raise ReplicasBehind(f"{acked} of {replicas} replicas acknowledged within {timeout_ms} ms")
    return reply


async def hscan_values(client, key: str, count: int, match: str | None = None):
    """The values of a hash's fields (those matching `match`), about `count` at a time, each batch a list:
    a big hash is never read, nor its reply parsed, in one command."""
    cursor = 0
    while True:
        cursor, found = await client.hscan(key, cursor, match=match, count=count)
        if found:
            yield list(found.values())
        if cursor == 0:
            return
