"""Every process builds its Redis clients in core/redisclient.py and its key names with `Keys.of(settings)`:
a client or a `Keys` made anywhere else ignores `CLICKTRAIL_REDIS_CLUSTER` (`clicktrail deliver` did both,
and delivered nothing on a Redis Cluster). Checked on the source of every package a process runs, whatever
name a module or a class is imported under."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "redirector", "attribution", "clicktrail")
REDIS_CLASSES = frozenset({"Redis", "StrictRedis", "RedisCluster"})
BUILDERS = frozenset({"from_url", "from_pool", *REDIS_CLASSES})
# The one module allowed each construction.
ALLOWED = {"a Redis client": "core/redisclient.py", "a Keys": "core/keys.py"}


def _root_and_attrs(node: ast.expr) -> tuple[str, list[str]]:
    """`a.b.c` -> ("a", ["b", "c"])."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.insert(0, node.attr)
        node = node.value
    return (node.id if isinstance(node, ast.Name) else ""), attrs


def _bindings(tree: ast.Module) -> tuple[set[str], set[str], set[str]]:
    """The local names bound to a redis module, to a redis client class (or redis's `from_url`), and to
    core.keys.Keys, by the source's imports."""
    modules: set[str] = set()
    classes: set[str] = set()
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "redis":
                    modules.add(alias.asname or "redis")
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            for alias in node.names:
                local = alias.asname or alias.name
                if top == "redis" and (alias.name in REDIS_CLASSES or alias.name == "from_url"):
                    classes.add(local)
                elif top == "redis" and alias.name in ("asyncio", "cluster", "client"):
                    modules.add(local)
                elif node.module == "core.keys" and alias.name == "Keys":
                    keys.add(local)
    return modules, classes, keys


def constructions(source: str) -> list[tuple[str, int]]:
    """(what, line) of each Redis client or `Keys` the source builds: `Redis(...)`, `X.Redis.from_url(...)`,
    `aioredis.from_url(...)`, `RedisCluster(...)` and the like, `Keys(...)` (not `Keys.of(...)`)."""
    tree = ast.parse(source)
    modules, classes, keys = _bindings(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        root, attrs = _root_and_attrs(node.func)
        if (not attrs and root in classes) or (
            attrs and attrs[-1] in BUILDERS and (root in classes or root in modules)
        ):
            found.append(("a Redis client", node.lineno))
        elif not attrs and root in keys:
            found.append(("a Keys", node.lineno))
    return found


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from redis.asyncio import Redis\nr = Redis.from_url(url)", ["a Redis client"]),
        ("import redis.asyncio\nr = redis.asyncio.Redis.from_url(url, socket_timeout=1)", ["a Redis client"]),
        ("from redis import Redis as SyncRedis\nr = SyncRedis.from_url(url)", ["a Redis client"]),
        ("import redis\nr = redis.Redis(host='h')", ["a Redis client"]),
        ("import redis\nr = redis.from_url(url)", ["a Redis client"]),
        ("import redis.asyncio as aioredis\nr = aioredis.from_url(url)", ["a Redis client"]),
        ("from redis.cluster import RedisCluster as C\nr = C.from_url(url)", ["a Redis client"]),
        ("from redis.asyncio import RedisCluster\nr = RedisCluster(host='h')", ["a Redis client"]),
        ("from core.keys import Keys\nk = Keys(settings.redis_prefix)", ["a Keys"]),
        ("from core.keys import Keys as K\nk = K('p:')", ["a Keys"]),
        ("from core.keys import Keys\nk = Keys.of(settings)", []),
        ("from clickhouse_driver import Client\nc = Client.from_url(url)", []),
        ("u = strip_from_url(url, 'p')", []),
        ("import redis\nx = redis.exceptions.RedisError('e')", []),
    ],
)
def test_constructions_are_found(source: str, expected: list[str]) -> None:
    assert [what for what, _ in constructions(source)] == expected


def test_only_the_one_module_of_each_builds_it() -> None:
    stray = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for what, line in constructions(path.read_text()):
                if ALLOWED[what] != relative:
                    stray.append(f"{relative}:{line}: {what}")
    assert stray == []
